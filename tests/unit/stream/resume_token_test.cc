// Resume tokens: round trips, and every truncation, corruption or foreign token rejected.
#include <cstdint>
#include <string>
#include <vector>

#include "base/crc32c.h"
#include "base/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stream/resume_token.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

StreamParams SampleParams() {
  StreamParams p;
  p.scene_id = "guitar";
  p.model_digest = std::string(64, 'a');
  p.top_ratio = 0.1 + 0.2;  // not a short decimal: bits must survive
  p.ladder = {0.01, 0.05, 0.10};
  p.sh_degree = 2;
  p.encoding = 2;
  p.max_chunk_bytes = 65536;
  return p;
}

// Rewrites a token's CRC after an edit, as a forger (or a future version) would.
std::string Reseal(std::string token) {
  token.resize(token.size() - 4);
  const uint32_t crc = Crc32c(token);
  for (int i = 0; i < 4; ++i) token.push_back(static_cast<char>((crc >> (8 * i)) & 0xFF));
  return token;
}

TEST(ResumeTokenTest, RoundTrips) {
  const StreamParams p = SampleParams();
  const std::string token = EncodeResumeToken(p);
  EXPECT_EQ(token.substr(0, 4), "FGRT");
  auto back = DecodeResumeToken(token);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == p);
  EXPECT_EQ(EncodeResumeToken(*back), token);

  StreamParams big;
  big.scene_id = std::string(512, 's');
  big.model_digest = std::string(128, 'd');
  big.top_ratio = 1.0;
  for (int i = 1; i <= 64; ++i) big.ladder.push_back(i / 64.0);
  big.sh_degree = 3;
  big.encoding = 1;
  big.max_chunk_bytes = 0xFFFFFFFFu;
  auto big_back = DecodeResumeToken(EncodeResumeToken(big));
  ASSERT_TRUE(big_back.ok()) << big_back.status();
  EXPECT_TRUE(*big_back == big);

  StreamParams empty;  // every field at its default
  auto empty_back = DecodeResumeToken(EncodeResumeToken(empty));
  ASSERT_TRUE(empty_back.ok()) << empty_back.status();
  EXPECT_TRUE(*empty_back == empty);
}

TEST(ResumeTokenTest, EqualityIsFieldwiseAndBitwise) {
  const StreamParams p = SampleParams();
  StreamParams q = p;
  EXPECT_TRUE(p == q);
  q.top_ratio = std::nextafter(p.top_ratio, 1.0);
  EXPECT_FALSE(p == q);
  q = p;
  q.ladder.back() = std::nextafter(q.ladder.back(), 0.0);
  EXPECT_FALSE(p == q);
  q = p;
  q.ladder.pop_back();
  EXPECT_FALSE(p == q);
  q = p;
  q.model_digest[0] = 'b';
  EXPECT_FALSE(p == q);
  q = p;
  q.scene_id += "x";
  EXPECT_FALSE(p == q);
  q = p;
  q.sh_degree = 1;
  EXPECT_FALSE(p == q);
  q = p;
  q.encoding = 1;
  EXPECT_FALSE(p == q);
  q = p;
  q.max_chunk_bytes = 4096;
  EXPECT_FALSE(p == q);
  StreamParams z1, z2;
  z2.top_ratio = -0.0;  // equal as numbers, different bits
  EXPECT_FALSE(z1 == z2);
}

TEST(ResumeTokenTest, EveryTruncationIsRejected) {
  const std::string token = EncodeResumeToken(SampleParams());
  for (size_t len = 0; len < token.size(); ++len) {
    auto r = DecodeResumeToken(absl::string_view(token.data(), len));
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << len;
    ASSERT_THAT(std::string(r.status().message()), HasSubstr("resume token is damaged")) << len;
  }
  EXPECT_FALSE(DecodeResumeToken(token + "x").ok());
}

TEST(ResumeTokenTest, EverySingleByteCorruptionIsRejected) {
  const std::string token = EncodeResumeToken(SampleParams());
  SplitMix64 rng(2024);
  for (int i = 0; i < 1000; ++i) {
    std::string bad = token;
    const size_t pos = rng.Next() % bad.size();
    const uint8_t flip = static_cast<uint8_t>(1 + rng.Next() % 255);  // never 0: a real change
    bad[pos] = static_cast<char>(static_cast<uint8_t>(bad[pos]) ^ flip);
    auto r = DecodeResumeToken(bad);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << pos << " ^ " << int{flip};
  }
}

TEST(ResumeTokenTest, ForeignAndFutureTokensAreRejected) {
  const std::string token = EncodeResumeToken(SampleParams());
  std::string future = token;
  future[4] = 2;
  auto r = DecodeResumeToken(Reseal(future));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("version 2"));

  EXPECT_FALSE(DecodeResumeToken("").ok());
  EXPECT_FALSE(DecodeResumeToken(std::string(2000, 'A')).ok());
  std::string foreign = token;
  foreign[0] = 'X';
  EXPECT_FALSE(DecodeResumeToken(Reseal(foreign)).ok());

  // Well sealed but absurd: a scene id length past its bound, trailing bytes, a
  // non-finite ratio, an SH degree no model has.
  std::string long_id = token;
  long_id[5] = static_cast<char>(0x01);
  long_id[6] = static_cast<char>(0x02);  // 513
  EXPECT_FALSE(DecodeResumeToken(Reseal(long_id)).ok());
  std::string trailing = token;
  trailing.insert(trailing.size() - 4, "zz");
  EXPECT_FALSE(DecodeResumeToken(Reseal(trailing)).ok());
  StreamParams p = SampleParams();
  p.top_ratio = std::nan("");
  EXPECT_FALSE(DecodeResumeToken(EncodeResumeToken(p)).ok());
  p = SampleParams();
  p.sh_degree = 4;
  EXPECT_FALSE(DecodeResumeToken(EncodeResumeToken(p)).ok());
  p = SampleParams();
  p.encoding = 7;
  EXPECT_FALSE(DecodeResumeToken(EncodeResumeToken(p)).ok());
}

}  // namespace
}  // namespace flexgs
