// CRC-32C (Castagnoli) against known vectors and a bit-at-a-time reference.
#include <cstdint>
#include <string>
#include <vector>

#include "base/crc32c.h"
#include "base/random.h"
#include "gtest/gtest.h"

namespace flexgs {
namespace {

// Bit-at-a-time reference, independent of the table code.
uint32_t ReferenceCrc32c(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int i = 0; i < 8; ++i) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string up, down;  // RFC 3720 B.4
  for (int i = 0; i < 32; ++i) {
    up.push_back(static_cast<char>(i));
    down.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(Crc32c(up), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(down), 0x113FDB5Cu);
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32cExtend(0, nullptr, 0), 0u);
}

TEST(Crc32cTest, MatchesBitwiseReferenceAtEveryLengthAndAlignment) {
  SplitMix64 rng(11);
  std::string buf(300, '\0');
  for (char& c : buf) c = static_cast<char>(rng.Next());
  for (size_t offset = 0; offset < 9; ++offset) {
    for (size_t len = 0; offset + len <= buf.size(); len += 7) {
      const std::string s = buf.substr(offset, len);
      ASSERT_EQ(Crc32c(s), ReferenceCrc32c(s)) << offset << " " << len;
    }
  }
}

TEST(Crc32cTest, ExtendComposes) {
  SplitMix64 rng(5);
  std::string data(1000, '\0');
  for (char& c : data) c = static_cast<char>(rng.Next());
  const uint32_t whole = Crc32c(data);
  for (size_t split = 0; split <= data.size(); ++split) {
    const uint32_t a = Crc32cExtend(0, data.data(), split);
    ASSERT_EQ(Crc32cExtend(a, data.data() + split, data.size() - split), whole) << split;
  }
  // Three pieces, including empty ones.
  uint32_t c = Crc32cExtend(0, data.data(), 13);
  c = Crc32cExtend(c, data.data() + 13, 0);
  c = Crc32cExtend(c, data.data() + 13, 500);
  c = Crc32cExtend(c, data.data() + 513, 487);
  EXPECT_EQ(c, whole);
}

}  // namespace
}  // namespace flexgs
