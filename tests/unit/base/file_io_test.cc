// ReadFileToString and WriteFileAtomically: contents, every documented error code, and
// that a replacement never leaves a mixed or temporary file behind.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "base/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flexgs {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class FileIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("flexgs_file_io_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add);
    fs::remove_all(dir_);
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(FileIoTest, WriteThenReadRoundTripsBinaryData) {
  std::string data(70000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 131) & 0xFF);
  ASSERT_TRUE(WriteFileAtomically(Path("a.bin"), data).ok());
  auto read = ReadFileToString(Path("a.bin"));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, data);
  ASSERT_TRUE(WriteFileAtomically(Path("empty"), "").ok());
  EXPECT_EQ(ReadFileToString(Path("empty")).value(), "");
}

TEST_F(FileIoTest, ReplacementLeavesOnlyTheNewFileWithMode0644) {
  ASSERT_TRUE(WriteFileAtomically(Path("f"), "old contents, longer than the new").ok());
  ASSERT_TRUE(WriteFileAtomically(Path("f"), "new").ok());
  EXPECT_EQ(ReadFileToString(Path("f")).value(), "new");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    ++files;
    EXPECT_EQ(e.path().filename(), "f") << "left behind: " << e.path();
  }
  EXPECT_EQ(files, 1);
  struct stat st {};
  ASSERT_EQ(::stat(Path("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST_F(FileIoTest, ReadErrorsNameThePathAndTheCause) {
  auto missing = ReadFileToString(Path("missing"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(Path("missing")));

  auto dir = ReadFileToString(dir_.string());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dir.status().message(), HasSubstr(dir_.string()));

  ASSERT_TRUE(WriteFileAtomically(Path("big"), std::string(1000, 'x')).ok());
  auto big = ReadFileToString(Path("big"), /*max_bytes=*/999);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(ReadFileToString(Path("big"), /*max_bytes=*/1000).ok());

  if (::geteuid() != 0) {  // root reads anything
    fs::permissions(Path("big"), fs::perms::none);
    EXPECT_EQ(ReadFileToString(Path("big")).status().code(), absl::StatusCode::kPermissionDenied);
  }
}

TEST_F(FileIoTest, FailedWriteKeepsTheOldFileAndLeavesNoTemporary) {
  ASSERT_TRUE(WriteFileAtomically(Path("keep"), "old").ok());
  // A directory where the file should go: the rename fails, the temporary is removed.
  fs::create_directories(dir_ / "sub");
  EXPECT_FALSE(WriteFileAtomically(Path("sub"), "data").ok());
  // A missing parent directory.
  const absl::Status no_dir = WriteFileAtomically(Path("no/such/dir/f"), "data");
  EXPECT_FALSE(no_dir.ok());
  EXPECT_THAT(no_dir.message(), HasSubstr("no/such/dir"));
  if (::geteuid() != 0) {  // an unwritable directory (root writes anyway)
    fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_FALSE(WriteFileAtomically(Path("keep"), "new").ok());
    fs::permissions(dir_, fs::perms::owner_all);
  }
  EXPECT_EQ(ReadFileToString(Path("keep")).value(), "old");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 2) << "only keep and sub/ may remain";
}

}  // namespace
}  // namespace flexgs
