#include "base/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flexgs {
namespace {

absl::Status ErrnoError(int err, const std::string& path, const char* what) {
  return absl::ErrnoToStatus(err, absl::StrCat(path, ": ", what));
}

// Closes a descriptor on scope exit unless released.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// read() until `size` bytes arrived or EOF; returns the byte count or -errno.
int64_t ReadFully(int fd, char* dst, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, dst + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<int64_t>(done);
}

absl::Status WriteFully(int fd, std::string_view data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, path, "write failed");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return ErrnoError(err, path, "cannot open");
  }
  FdCloser closer(fd);
  // fstat the open descriptor (not the path) so the checks apply to what we read.
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, path, "cannot stat");
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a file"));
  }
  auto too_large = [&](uint64_t size) {
    return absl::ResourceExhaustedError(absl::StrCat(path, ": file is too large: ", size, " bytes, limit ", max_bytes));
  };

  std::string out;
  if (S_ISREG(st.st_mode)) {
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size > max_bytes) return too_large(size);
    out.resize(size);
    const int64_t n = ReadFully(fd, out.data(), out.size());
    if (n < 0) return ErrnoError(static_cast<int>(-n), path, "read error");
    if (static_cast<uint64_t>(n) != size) {
      return absl::DataLossError(
          absl::StrCat(path, ": read error: expected ", size, " bytes, got ", n, " (file changed?)"));
    }
    // A file that grew after fstat is read up to its stat size; that is a consistent
    // snapshot of a file being appended to, which is the best we can do without locks.
    return out;
  }

  // Pipes and character devices have no size: read in blocks up to the limit.
  constexpr size_t kBlock = size_t{1} << 20;
  while (true) {
    const size_t old = out.size();
    if (old > max_bytes) return too_large(old);
    out.resize(old + kBlock);
    const int64_t n = ReadFully(fd, out.data() + old, kBlock);
    if (n < 0) return ErrnoError(static_cast<int>(-n), path, "read error");
    out.resize(old + static_cast<size_t>(n));
    if (static_cast<size_t>(n) < kBlock) break;
  }
  if (out.size() > max_bytes) return too_large(out.size());
  return out;
}

absl::Status WriteFileAtomically(const std::string& path, std::string_view data) {
  namespace fs = std::filesystem;
  if (path.empty()) return absl::InvalidArgumentError("WriteFileAtomically: empty path");
  const fs::path target(path);
  if (std::error_code ec; fs::is_directory(target, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, cannot write a file there"));
  }
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";

  // The temporary lives in the target's directory so rename() is atomic (same filesystem).
  std::string tmp = (dir / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) return ErrnoError(errno, path, "cannot create a temporary file next to it");
  FdCloser closer(fd);
  auto fail = [&](absl::Status status) {
    ::close(closer.release());
    ::unlink(tmp.c_str());
    return status;
  };

  if (absl::Status s = WriteFully(fd, data, path); !s.ok()) return fail(s);
  // mkstemp creates 0600; scene files are meant to be shared like any other output.
  if (::fchmod(fd, 0644) != 0) return fail(ErrnoError(errno, path, "fchmod failed"));
  // fsync before rename: otherwise a crash can leave the new name pointing at an empty file.
  if (::fsync(fd) != 0) return fail(ErrnoError(errno, path, "fsync failed"));
  if (::close(closer.release()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoError(err, path, "close failed");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoError(err, path, "rename of the temporary file failed");
  }
  // Persist the directory entry too; best effort (some filesystems refuse fsync on dirs).
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

}  // namespace flexgs
