#include "io/png_io.h"

#include <png.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_util.h"

namespace flexgs {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Random image whose values are exact 8-bit levels, so a round trip is lossless.
Image RandomImage8(int w, int h, int c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> level(0, 255);
  std::vector<uint8_t> bytes(static_cast<size_t>(w) * h * c);
  for (auto& b : bytes) b = static_cast<uint8_t>(level(rng));
  return Image::FromRgb8(bytes.data(), w, h, c);
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary);
  out << data;
}

TEST(PngIoTest, RoundTripIsExactAt8Bits) {
  const fs::path dir = testing::ScratchDir();
  for (int c : {3, 4}) {
    const Image img = RandomImage8(37, 23, c, 11 + c);
    const std::string path = (dir / ("img" + std::to_string(c) + ".png")).string();
    ASSERT_TRUE(WritePng(path, img).ok());
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    auto back = ReadPng(path);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->width, 37);
    EXPECT_EQ(back->height, 23);
    ASSERT_EQ(back->channels, c);
    EXPECT_EQ(back->pixels, img.pixels);  // bit-exact floats
  }
}

TEST(PngIoTest, QuantisesLikeToRgb8) {
  Image img(4, 1, 3);
  const float vals[12] = {-0.5f, 0.0f, 0.1f, 0.5f, 0.999f, 1.0f, 2.0f, 0.25f, 0.75f, 0.3f, 0.6f, 0.9f};
  std::copy(vals, vals + 12, img.pixels.begin());
  const std::string path = (testing::ScratchDir() / "q.png").string();
  ASSERT_TRUE(WritePng(path, img).ok());
  auto back = ReadPng(path);
  ASSERT_TRUE(back.ok()) << back.status();
  const std::vector<uint8_t> expected = img.ToRgb8();
  EXPECT_EQ(back->ToRgb8(), expected);
}

TEST(PngIoTest, GrayImagesReadAsRgb) {
  const Image gray = RandomImage8(9, 5, 1, 5);
  const std::string path = (testing::ScratchDir() / "g.png").string();
  ASSERT_TRUE(WritePng(path, gray).ok());
  auto back = ReadPng(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->channels, 3);
  for (int y = 0; y < 5; ++y) {
    for (int x = 0; x < 9; ++x) {
      for (int c = 0; c < 3; ++c) EXPECT_EQ(back->at(x, y, c), gray.at(x, y, 0));
    }
  }
}

// Writes a 16-bit RGB PNG with libpng directly.
void Write16BitPng(const std::string& path, int w, int h, const std::vector<uint16_t>& samples) {
  FILE* fp = std::fopen(path.c_str(), "wb");
  ASSERT_NE(fp, nullptr);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, fp);
  png_set_IHDR(png, info, w, h, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  std::vector<uint8_t> row(static_cast<size_t>(w) * 6);
  for (int y = 0; y < h; ++y) {
    for (int i = 0; i < w * 3; ++i) {
      const uint16_t v = samples[static_cast<size_t>(y) * w * 3 + i];
      row[2 * i] = v >> 8;  // big-endian samples
      row[2 * i + 1] = v & 0xff;
    }
    png_write_row(png, row.data());
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(fp);
}

TEST(PngIoTest, Reads16Bit) {
  const std::string path = (testing::ScratchDir() / "deep.png").string();
  const std::vector<uint16_t> samples = {0, 1, 65535, 32768, 1000, 40000};
  Write16BitPng(path, 2, 1, samples);
  auto img = ReadPng(path);
  ASSERT_TRUE(img.ok()) << img.status();
  ASSERT_EQ(img->channels, 3);
  for (size_t i = 0; i < samples.size(); ++i) EXPECT_FLOAT_EQ(img->pixels[i], samples[i] / 65535.0f) << i;
}

TEST(PngIoTest, MissingAndCorruptFiles) {
  const fs::path dir = testing::ScratchDir();
  auto missing = ReadPng((dir / "none.png").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  WriteFile(dir / "text.png", "this is not a png at all");
  auto notpng = ReadPng((dir / "text.png").string());
  EXPECT_EQ(notpng.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(notpng.status().message()), HasSubstr("not a PNG"));

  const std::string good = (dir / "good.png").string();
  ASSERT_TRUE(WritePng(good, RandomImage8(64, 64, 3, 1)).ok());
  const std::string bytes = ReadFile(good);
  // Truncated in the middle of the image data.
  WriteFile(dir / "trunc.png", bytes.substr(0, bytes.size() / 2));
  auto trunc = ReadPng((dir / "trunc.png").string());
  EXPECT_EQ(trunc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(trunc.status().message()), HasSubstr("trunc.png"));
  // Corrupted IHDR (bad CRC on a critical chunk).
  std::string flipped = bytes;
  flipped[18] ^= 0x5a;  // inside IHDR's width field
  WriteFile(dir / "crc.png", flipped);
  auto crc = ReadPng((dir / "crc.png").string());
  EXPECT_EQ(crc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(crc.status().message()), HasSubstr("invalid PNG"));
}

TEST(PngIoTest, WriteErrorsLeaveNoFile) {
  const fs::path dir = testing::ScratchDir();
  Image bad(4, 4, 5);
  EXPECT_FALSE(WritePng((dir / "five.png").string(), bad).ok());
  EXPECT_FALSE(fs::exists(dir / "five.png"));
  Image empty;
  EXPECT_FALSE(WritePng((dir / "empty.png").string(), empty).ok());
  const absl::Status s = WritePng((dir / "no_such_dir" / "x.png").string(), RandomImage8(2, 2, 3, 2));
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(fs::exists(dir / "no_such_dir"));
}

}  // namespace
}  // namespace flexgs
