#include "base/sha256.h"

#include <string>

#include "gtest/gtest.h"

namespace flexgs {
namespace {

// FIPS 180-2 / NIST CAVP example vectors.
constexpr char kAbc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kEmpty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char k448Bit[] = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
constexpr char k448BitMessage[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
constexpr char k896Bit[] = "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1";
constexpr char k896BitMessage[] =
    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopq"
    "rstu";
constexpr char kMillionA[] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

TEST(Sha256Test, FipsVectors) {
  EXPECT_EQ(Sha256Hex("abc"), kAbc);
  EXPECT_EQ(Sha256Hex(""), kEmpty);
  EXPECT_EQ(Sha256Hex(k448BitMessage), k448Bit);
  EXPECT_EQ(Sha256Hex(k896BitMessage), k896Bit);
  EXPECT_EQ(Sha256Hex(std::string(1'000'000, 'a')), kMillionA);
}

TEST(Sha256Test, StreamingMatchesOneShotAndResets) {
  Sha256 hasher;
  const std::string message = k448BitMessage;
  for (size_t split = 0; split <= message.size(); ++split) {
    hasher.Update(std::string_view(message).substr(0, split));
    hasher.Update(std::string_view(message).substr(split));
    ASSERT_EQ(hasher.FinishHex(), k448Bit) << "split at " << split;
  }
  // Finishing resets: the same instance digests the next message from scratch.
  hasher.Update("ab");
  hasher.Update("c");
  EXPECT_EQ(hasher.FinishHex(), kAbc);
  EXPECT_EQ(hasher.FinishHex(), kEmpty);

  for (int i = 0; i < 1000; ++i) hasher.Update(std::string(1000, 'a'));
  EXPECT_EQ(hasher.FinishHex(), kMillionA);
}

TEST(Sha256Test, RawDigestMatchesHex) {
  Sha256 hasher;
  hasher.Update("abc");
  const auto digest = hasher.Finish();
  EXPECT_EQ(digest[0], 0xba);
  EXPECT_EQ(digest[31], 0xad);
}

TEST(Sha256Test, IsSha256Hex) {
  EXPECT_TRUE(IsSha256Hex(kAbc));
  EXPECT_FALSE(IsSha256Hex(""));
  EXPECT_FALSE(IsSha256Hex(std::string(kAbc).substr(1)));
  std::string upper = kAbc;
  upper[0] = 'B';
  EXPECT_FALSE(IsSha256Hex(upper));
  std::string bad = kAbc;
  bad[10] = 'g';
  EXPECT_FALSE(IsSha256Hex(bad));
}

}  // namespace
}  // namespace flexgs
