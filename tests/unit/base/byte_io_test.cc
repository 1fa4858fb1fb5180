// ByteWriter / ByteReader: the exact little-endian bytes of every scalar width, round
// trips, and a reader that rejects every truncation without reading past its input.
#include "base/byte_io.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace flexgs {
namespace {

enum class Tag : uint8_t { kA = 7, kB = 200 };

std::string Hex(const std::string& s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

TEST(ByteWriterTest, WritesLeastSignificantByteFirst) {
  std::string out;
  ByteWriter w(&out);
  w.Put(uint8_t{0xAB});
  w.Put(uint16_t{0x0102});
  w.Put(uint32_t{0x01020304});
  w.Put(uint64_t{0x0102030405060708});
  w.Put(int32_t{-2});
  w.Put(Tag::kB);
  EXPECT_EQ(Hex(out),
            "ab"
            "0201"
            "04030201"
            "0807060504030201"
            "feffffff"
            "c8");
  EXPECT_EQ(w.size(), out.size());
}

TEST(ByteWriterTest, WritesFloatsAsTheirIeeeBits) {
  std::string out;
  ByteWriter w(&out);
  w.Put(1.0f);
  w.Put(-2.0);
  EXPECT_EQ(Hex(out),
            "0000803f"
            "00000000000000c0");
}

TEST(ByteWriterTest, AppendsToWhatIsThere) {
  std::string out = "XY";
  ByteWriter w(&out);
  w.PutBytes("ab");
  w.PutBytes(std::string_view());
  w.Put(uint8_t{'c'});
  EXPECT_EQ(out, "XYabc");
}

TEST(ByteWriterTest, PutFloatsIsPutOfEachFloat) {
  const std::vector<float> v = {
      0.0f, -0.0f, 1.5f, -3.25e-20f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::denorm_min()};
  std::string bulk, each;
  ByteWriter(&bulk).PutFloats(v);
  ByteWriter one(&each);
  for (float f : v) one.Put(f);
  EXPECT_EQ(bulk, each);
  const std::vector<float> empty;  // data() may be null
  ByteWriter(&bulk).PutFloats(empty);
  EXPECT_EQ(bulk, each);
}

TEST(ByteReaderTest, RoundTripsEveryScalarWidth) {
  std::string out;
  ByteWriter w(&out);
  w.Put(uint8_t{250});
  w.Put(int8_t{-100});
  w.Put(uint16_t{65000});
  w.Put(int16_t{-30000});
  w.Put(uint32_t{4000000000u});
  w.Put(int32_t{-2000000000});
  w.Put(std::numeric_limits<uint64_t>::max());
  w.Put(std::numeric_limits<int64_t>::min());
  w.Put(0.1f);
  w.Put(0.1);
  w.Put(Tag::kA);
  ByteReader r(out);
  uint8_t u8;
  int8_t i8;
  uint16_t u16;
  int16_t i16;
  uint32_t u32;
  int32_t i32;
  uint64_t u64;
  int64_t i64;
  float f;
  double d;
  Tag tag;
  ASSERT_TRUE(r.Get(&u8) && r.Get(&i8) && r.Get(&u16) && r.Get(&i16) && r.Get(&u32) && r.Get(&i32) && r.Get(&u64) &&
              r.Get(&i64) && r.Get(&f) && r.Get(&d) && r.Get(&tag));
  EXPECT_EQ(u8, 250);
  EXPECT_EQ(i8, -100);
  EXPECT_EQ(u16, 65000);
  EXPECT_EQ(i16, -30000);
  EXPECT_EQ(u32, 4000000000u);
  EXPECT_EQ(i32, -2000000000);
  EXPECT_EQ(u64, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(i64, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f, 0.1f);
  EXPECT_EQ(d, 0.1);
  EXPECT_EQ(tag, Tag::kA);
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_FALSE(r.Get(&u8));
}

TEST(ByteReaderTest, KeepsNanPayloadsBitForBit) {
  const uint64_t bits = 0x7FF4000000000123ull;  // a signalling NaN with a payload
  double nan;
  std::memcpy(&nan, &bits, 8);
  std::string out;
  ByteWriter(&out).Put(nan);
  ByteReader r(out);
  double back;
  ASSERT_TRUE(r.Get(&back));
  uint64_t back_bits;
  std::memcpy(&back_bits, &back, 8);
  EXPECT_EQ(back_bits, bits);
}

TEST(ByteReaderTest, BytesAndFloatsRoundTrip) {
  const std::vector<float> v = {1.0f, -2.5f, 3e30f};
  std::string out;
  ByteWriter w(&out);
  w.PutBytes("name");
  w.PutFloats(v);
  w.PutBytes("!");
  ByteReader r{absl::string_view(out)};  // the Abseil view works as well as the standard one
  std::string_view name, bang;
  std::vector<float> back = {9.0f};
  ASSERT_TRUE(r.Bytes(4, &name));
  ASSERT_TRUE(r.Floats(3, &back));
  ASSERT_TRUE(r.Bytes(1, &bang));
  EXPECT_EQ(name, "name");
  EXPECT_EQ(back, v);
  EXPECT_EQ(bang, "!");
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ByteReaderTest, ZeroLengthReadsSucceedAnywhere) {
  ByteReader empty{std::string_view()};  // null data()
  std::vector<float> v;                  // null data()
  std::string_view bytes = "x";
  EXPECT_TRUE(empty.Floats(0, &v));
  EXPECT_TRUE(v.empty());
  EXPECT_TRUE(empty.Bytes(0, &bytes));
  EXPECT_TRUE(bytes.empty());
  std::vector<float> shrunk = {1.0f, 2.0f};
  EXPECT_TRUE(empty.Floats(0, &shrunk));
  EXPECT_TRUE(shrunk.empty());
  uint8_t b;
  EXPECT_FALSE(empty.Get(&b));
}

TEST(ByteReaderTest, HugeCountsFailWithoutAllocating) {
  const std::string data(12, '\0');
  ByteReader r(data);
  std::vector<float> v = {1.0f};
  std::string_view bytes;
  // n * sizeof(float) wraps around for these: the check must not multiply.
  EXPECT_FALSE(r.Floats(std::numeric_limits<size_t>::max(), &v));
  EXPECT_FALSE(r.Floats(std::numeric_limits<size_t>::max() / 4 + 2, &v));
  EXPECT_FALSE(r.Floats(4, &v));
  EXPECT_EQ(v, std::vector<float>{1.0f}) << "a failed read leaves the output alone";
  EXPECT_FALSE(r.Bytes(std::numeric_limits<size_t>::max(), &bytes));
  EXPECT_FALSE(r.Bytes(13, &bytes));
  EXPECT_EQ(r.remaining(), 12u);
  EXPECT_TRUE(r.Floats(3, &v));
}

// One record of every kind of read; `Read` replays it against a reader and reports
// how many of its items were there.
struct Record {
  static constexpr int kItems = 6;
  static std::string Write() {
    std::string out;
    ByteWriter w(&out);
    w.Put(uint32_t{0xDEADBEEF});
    w.Put(uint8_t{3});
    w.PutBytes("abc");
    w.Put(2.5);
    w.PutFloats(std::vector<float>{1.0f, 2.0f});
    w.Put(int16_t{-7});
    return out;
  }
  static int Read(ByteReader& r) {
    uint32_t magic;
    uint8_t n;
    std::string_view s;
    double d;
    std::vector<float> f;
    int16_t last;
    if (!r.Get(&magic)) return 0;
    EXPECT_EQ(magic, 0xDEADBEEF);
    if (!r.Get(&n)) return 1;
    EXPECT_EQ(n, 3);
    if (!r.Bytes(n, &s)) return 2;
    EXPECT_EQ(s, "abc");
    if (!r.Get(&d)) return 3;
    EXPECT_EQ(d, 2.5);
    if (!r.Floats(2, &f)) return 4;
    EXPECT_EQ(f, (std::vector<float>{1.0f, 2.0f}));
    if (!r.Get(&last)) return 5;
    EXPECT_EQ(last, -7);
    return kItems;
  }
};

TEST(ByteReaderTest, RejectsEveryTruncationAndNeverReadsPastTheEnd) {
  const std::string full = Record::Write();
  // Item boundaries: 4 + 1 + 3 + 8 + 8 + 2 bytes.
  const size_t ends[Record::kItems] = {4, 5, 8, 16, 24, 26};
  ASSERT_EQ(full.size(), ends[Record::kItems - 1]);
  for (size_t len = 0; len <= full.size(); ++len) {
    // The bytes after the cut stay in memory (poisoned): a reader that looked past
    // its view would find them and succeed where it must fail.
    std::string poisoned = full.substr(0, len) + std::string(64, '\xA5');
    ByteReader r(std::string_view(poisoned.data(), len));
    int complete = 0;
    while (complete < Record::kItems && ends[complete] <= len) ++complete;
    EXPECT_EQ(Record::Read(r), complete) << "cut at " << len;
    // The failed read consumed nothing: what is left is the part of the cut item.
    EXPECT_EQ(r.remaining(), len - (complete == 0 ? 0 : ends[complete - 1])) << "cut at " << len;
  }
}

TEST(ByteReaderTest, AFailedReadLeavesThePositionForASmallerOne) {
  const std::string data = "\x01\x02\x03";
  ByteReader r(data);
  uint32_t u32;
  uint16_t u16;
  uint8_t u8;
  EXPECT_FALSE(r.Get(&u32));
  ASSERT_TRUE(r.Get(&u16));
  EXPECT_EQ(u16, 0x0201);
  EXPECT_FALSE(r.Get(&u16));
  ASSERT_TRUE(r.Get(&u8));
  EXPECT_EQ(u8, 3);
  EXPECT_EQ(r.remaining(), 0u);
}

}  // namespace
}  // namespace flexgs
