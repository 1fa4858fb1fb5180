#include "io/png_io.h"

#include <png.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"

namespace flexgs {
namespace {

constexpr png_uint_32 kMaxPngSide = 32768;

// libpng reports errors by calling this and never returning; we record the
// message and longjmp back to the setjmp in the calling helper.
struct PngErrorState {
  char message[256] = "unknown libpng error";
};

[[noreturn]] void OnPngError(png_structp png, png_const_charp msg) {
  auto* state = static_cast<PngErrorState*>(png_get_error_ptr(png));
  if (state != nullptr) std::snprintf(state->message, sizeof(state->message), "%s", msg ? msg : "(null)");
  png_longjmp(png, 1);
}

// Warnings (e.g. a bad CRC in an ancillary chunk, an unknown profile) do not
// affect the pixels we return.
void OnPngWarning(png_structp, png_const_charp) {}

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

// libpng's write callback: appends to the std::string behind the io pointer.
void AppendToString(png_structp png, png_bytep data, png_size_t size) {
  static_cast<std::string*>(png_get_io_ptr(png))->append(reinterpret_cast<const char*>(data), size);
}

void NoFlush(png_structp) {}

// The setjmp helpers below hold only trivially destructible locals so that a
// longjmp out of libpng skips no destructor.
bool WriteRows(png_structp png, png_infop info, std::string* out, png_uint_32 w, png_uint_32 h, int color_type,
               png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, AppendToString, NoFlush);
  png_set_IHDR(png, info, w, h, 8, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

struct ReadHeader {
  png_uint_32 width = 0, height = 0;
  int channels = 0;
  int bit_depth = 0;
  size_t row_bytes = 0;
};

bool ReadInfo(png_structp png, png_infop info, FILE* fp, ReadHeader* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_init_io(png, fp);
  png_set_sig_bytes(png, 8);
  png_set_user_limits(png, kMaxPngSide, kMaxPngSide);
  png_read_info(png, info);
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  // Normalise everything to 8- or 16-bit RGB(A).
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out->width = png_get_image_width(png, info);
  out->height = png_get_image_height(png, info);
  out->channels = png_get_channels(png, info);
  out->bit_depth = png_get_bit_depth(png, info);
  out->row_bytes = png_get_rowbytes(png, info);
  return true;
}

bool ReadRows(png_structp png, png_infop info, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, info);
  return true;
}

}  // namespace

absl::Status WritePng(const std::string& path, const Image& image) {
  if (image.width <= 0 || image.height <= 0 || image.width > static_cast<int>(kMaxPngSide) ||
      image.height > static_cast<int>(kMaxPngSide)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot write a ", image.width, "x", image.height, " image as PNG"));
  }
  int color_type;
  switch (image.channels) {
    case 1:
      color_type = PNG_COLOR_TYPE_GRAY;
      break;
    case 2:
      color_type = PNG_COLOR_TYPE_GRAY_ALPHA;
      break;
    case 3:
      color_type = PNG_COLOR_TYPE_RGB;
      break;
    case 4:
      color_type = PNG_COLOR_TYPE_RGBA;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(path, ": cannot write a ", image.channels, "-channel PNG"));
  }
  const size_t row_bytes = static_cast<size_t>(image.width) * image.channels;
  if (image.pixels.size() != row_bytes * image.height) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": image has ", image.pixels.size(), " values, expected ", row_bytes * image.height));
  }
  std::vector<uint8_t> bytes = image.ToRgb8();
  std::vector<png_bytep> rows(image.height);
  for (int y = 0; y < image.height; ++y) rows[y] = bytes.data() + row_bytes * y;

  // Encoded in memory, then written by the one atomic writer (base/file_io.h).
  std::string encoded;
  PngErrorState err;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, OnPngError, OnPngWarning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  const bool ok = png != nullptr && info != nullptr &&
                  WriteRows(png, info, &encoded, image.width, image.height, color_type, rows.data());
  if (png != nullptr) png_destroy_write_struct(&png, info ? &info : nullptr);
  if (!ok) return absl::InternalError(absl::StrCat(path, ": PNG write failed: ", err.message));
  return WriteFileAtomically(path, encoded);
}

absl::StatusOr<Image> ReadPng(const std::string& path) {
  FilePtr fp(std::fopen(path.c_str(), "rb"));
  if (!fp) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": file not found"));
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  png_byte sig[8];
  if (std::fread(sig, 1, sizeof(sig), fp.get()) != sizeof(sig) || png_sig_cmp(sig, 0, sizeof(sig)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a PNG file (bad signature)"));
  }
  PngErrorState err;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, OnPngError, OnPngWarning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  // Destroys the libpng structs on every return path.
  struct Guard {
    png_structp* png;
    png_infop* info;
    ~Guard() {
      if (*png) png_destroy_read_struct(png, *info ? info : nullptr, nullptr);
    }
  } guard{&png, &info};
  if (png == nullptr || info == nullptr) return absl::ResourceExhaustedError("libpng initialisation failed");

  ReadHeader hdr;
  if (!ReadInfo(png, info, fp.get(), &hdr)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": invalid PNG: ", err.message));
  }
  if (hdr.width == 0 || hdr.height == 0 || hdr.width > kMaxPngSide || hdr.height > kMaxPngSide ||
      (hdr.channels != 3 && hdr.channels != 4) || (hdr.bit_depth != 8 && hdr.bit_depth != 16) ||
      hdr.row_bytes != static_cast<size_t>(hdr.width) * hdr.channels * (hdr.bit_depth / 8)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported PNG layout (", hdr.width, "x", hdr.height, ", ",
                                                   hdr.channels, " channels, ", hdr.bit_depth, " bits)"));
  }
  std::vector<uint8_t> bytes(hdr.row_bytes * hdr.height);
  std::vector<png_bytep> rows(hdr.height);
  for (png_uint_32 y = 0; y < hdr.height; ++y) rows[y] = bytes.data() + hdr.row_bytes * y;
  if (!ReadRows(png, info, rows.data())) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": corrupt PNG data: ", err.message));
  }

  Image img(static_cast<int>(hdr.width), static_cast<int>(hdr.height), hdr.channels);
  if (hdr.bit_depth == 8) {
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = bytes[i] / 255.0f;
  } else {
    for (size_t i = 0; i < img.pixels.size(); ++i) {  // PNG samples are big-endian
      img.pixels[i] = static_cast<float>((bytes[2 * i] << 8) | bytes[2 * i + 1]) / 65535.0f;
    }
  }
  return img;
}

}  // namespace flexgs
