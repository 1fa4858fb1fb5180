#include "io/safetensors.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

// Builds a file from a header text and a data section, as a writer would.
std::string MakeFile(const std::string& header, const std::string& data = "", uint64_t header_len = UINT64_MAX) {
  if (header_len == UINT64_MAX) header_len = header.size();
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((header_len >> (8 * i)) & 0xff));
  return out + header + data;
}

std::string FloatBytes(std::initializer_list<float> values) {
  std::string out;
  for (float v : values) {
    char b[4];
    std::memcpy(b, &v, 4);
    out.append(b, 4);
  }
  return out;
}

// Expects a parse failure whose message contains `reason`.
void ExpectRejected(const std::string& file, const std::string& reason) {
  auto parsed = ParseSafetensors(file);
  ASSERT_FALSE(parsed.ok()) << "accepted a file that should fail with: " << reason;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(reason));
}

TensorMap SampleTensors() {
  TensorMap t;
  t["b.weight"] = {{2, 3}, {1, 2, 3, 4, 5, 6}};
  t["a.bias"] = {{3}, {-1.5f, 0.25f, 1e-30f}};
  t["scalar"] = {{}, {42.0f}};
  t["empty"] = {{0, 4}, {}};
  t["big"] = {{4, 5, 6}, std::vector<float>(120)};
  for (int i = 0; i < 120; ++i) t["big"].data[i] = static_cast<float>(i) * 0.5f - 7.0f;
  return t;
}

TEST(SafetensorsTest, RoundTripWithMetadata) {
  const TensorMap tensors = SampleTensors();
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "h\u00e9llo \"quoted\""}};
  const std::string bytes = SerializeSafetensors(tensors, meta);
  ASSERT_FALSE(bytes.empty());
  std::map<std::string, std::string> meta_back;
  auto parsed = ParseSafetensors(bytes, &meta_back);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(parsed->count(name)) << name;
    EXPECT_EQ(parsed->at(name).shape, t.shape) << name;
    EXPECT_EQ(parsed->at(name).data, t.data) << name;
  }
  EXPECT_EQ(meta_back, meta);
  // Deterministic: the same input serialises to the same bytes.
  EXPECT_EQ(SerializeSafetensors(tensors, meta), bytes);
}

TEST(SafetensorsTest, LayoutFollowsTheFormat) {
  TensorMap t;
  t["z"] = {{1}, {3.0f}};
  t["a"] = {{2}, {1.0f, 2.0f}};
  const std::string bytes = SerializeSafetensors(t);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u) << "header padded to a multiple of 8";
  ASSERT_EQ(bytes.size(), 8 + n + 12);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  EXPECT_THAT(header, HasSubstr(R"("a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]})"));
  EXPECT_THAT(header, HasSubstr(R"("z":{"data_offsets":[8,12],"dtype":"F32","shape":[1]})"));
  EXPECT_EQ(header.find("__metadata__"), std::string::npos);
  // Name order, little-endian float32.
  EXPECT_EQ(bytes.substr(8 + n), FloatBytes({1.0f, 2.0f, 3.0f}));
}

TEST(SafetensorsTest, ReadsForeignLayout) {
  // Keys in another order, whitespace, no padding, tensors stored out of name order:
  // what other writers may produce.
  const std::string header =
      R"({ "__metadata__": {"format": "np"}, "w": {"shape": [2, 1], "dtype": "F32", "data_offsets": [4, 12]},)"
      R"( "v": {"data_offsets": [0, 4], "shape": [], "dtype": "F32"} })";
  auto parsed = ParseSafetensors(MakeFile(header, FloatBytes({9.0f, 1.0f, 2.0f})));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->at("v").data, std::vector<float>({9.0f}));
  EXPECT_EQ(parsed->at("w").shape, std::vector<int64_t>({2, 1}));
  EXPECT_EQ(parsed->at("w").data, std::vector<float>({1.0f, 2.0f}));
}

TEST(SafetensorsTest, EmptyMapRoundTrips) {
  const std::string bytes = SerializeSafetensors({});
  auto parsed = ParseSafetensors(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->empty());
}

TEST(SafetensorsTest, SerializeRejectsInconsistentTensors) {
  EXPECT_EQ(SerializeSafetensors({{"x", {{2, 2}, {1, 2, 3}}}}), "");
  EXPECT_EQ(SerializeSafetensors({{"x", {{-1}, {}}}}), "");
  EXPECT_EQ(SerializeSafetensors({{"", {{1}, {1}}}}), "");
  EXPECT_EQ(SerializeSafetensors({{"__metadata__", {{1}, {1}}}}), "");
  EXPECT_EQ(SerializeSafetensors({{"bad\xff", {{1}, {1}}}}), "");  // not UTF-8
}

TEST(SafetensorsTest, ShapeElementCount) {
  EXPECT_EQ(ShapeElementCount({}), 1);
  EXPECT_EQ(ShapeElementCount({3, 4}), 12);
  EXPECT_EQ(ShapeElementCount({0, 5}), 0);
  EXPECT_EQ(ShapeElementCount({-1}), -1);
  EXPECT_EQ(ShapeElementCount({int64_t{1} << 31, int64_t{1} << 31}), -1);  // * 4 bytes overflows
  EXPECT_EQ(ShapeElementCount({0, int64_t{1} << 40, int64_t{1} << 40}), -1);
}

TEST(SafetensorsTest, RejectsBadHeaderLength) {
  ExpectRejected("", "too short");
  ExpectRejected("1234567", "too short");
  ExpectRejected(MakeFile("{}", "", uint64_t{1} << 63), "exceeds the limit");
  ExpectRejected(MakeFile("{}", "", 100'000'001), "exceeds the limit");
  ExpectRejected(MakeFile("{}", "", 50), "truncated");
  ExpectRejected(MakeFile("", ""), "does not start with '{'");
  ExpectRejected(MakeFile("  {}"), "does not start with '{'");
}

TEST(SafetensorsTest, RejectsBadJson) {
  ExpectRejected(MakeFile("{\"a\": "), "not valid JSON");
  ExpectRejected(MakeFile("{} extra"), "not valid JSON");
  ExpectRejected(MakeFile("{\"a\":\"\xff\"}"), "not valid JSON");
  ExpectRejected(MakeFile(std::string(10, '{') + std::string(10, '}')), "nests deeper");
  ExpectRejected(MakeFile(std::string("{\"a\":") + std::string(100000, '[') + std::string(100000, ']') + "}"),
                 "nests deeper");
  ExpectRejected(MakeFile(R"({"a": 1})"), "tensor 'a': entry is not an object");
  ExpectRejected(MakeFile(R"({"__metadata__": [1]})"), "__metadata__ is not an object");
  ExpectRejected(MakeFile(R"({"__metadata__": {"k": 1}})"), "__metadata__ value for 'k' is not a string");
}

TEST(SafetensorsTest, RejectsBadEntries) {
  const std::string four = FloatBytes({1.0f});
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}})", four),
                 "tensor 'w' has dtype F16; only F32 is supported");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", four + four),
                 "tensor 'w' has dtype F64");
  ExpectRejected(MakeFile(R"({"w": {"dtype": 3, "shape": [1], "data_offsets": [0, 4]}})", four),
                 "dtype is not a string");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1]}})", four), "needs dtype, shape and data_offsets");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}})", four),
                 "unknown field 'x'");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", four),
                 "not a non-negative integer");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}})", four),
                 "not a non-negative integer");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [99999999999999999999], "data_offsets": [0, 4]}})", four),
                 "not a non-negative integer");
  ExpectRejected(
      MakeFile(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})", four),
      "is too large");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]}})", four),
                 "rank 9 exceeds");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}})", four),
                 "shape is not an array");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", four),
                 "data_offsets must be two non-negative integers");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", four),
                 "data_offsets must be two non-negative integers");
  ExpectRejected(MakeFile(R"({"": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", four),
                 "empty tensor name");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                          R"( "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                          four),
                 "repeats the key 'w'");
}

TEST(SafetensorsTest, RejectsBadOffsets) {
  const std::string eight = FloatBytes({1.0f, 2.0f});
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", FloatBytes({1.0f})),
                 "out of range");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", eight), "out of range");
  ExpectRejected(
      MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [18446744073709551612, 18446744073709551615]}})",
               eight),
      "out of range");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}})", eight),
                 "span 8 bytes but shape [1] of F32 needs 4");
  ExpectRejected(MakeFile(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                          R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                          eight),
                 "overlaps");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", eight),
                 "belong to no tensor");
  ExpectRejected(MakeFile(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", eight),
                 "4 trailing bytes");
  ExpectRejected(MakeFile(R"({})", eight), "8 trailing bytes");
}

TEST(SafetensorsTest, EveryTruncationIsRejected) {
  const std::string bytes = SerializeSafetensors(SampleTensors(), {{"k", "v"}});
  for (size_t len = 0; len < bytes.size(); ++len) {
    EXPECT_FALSE(ParseSafetensors(std::string_view(bytes).substr(0, len)).ok()) << "prefix of " << len;
  }
}

// A light in-test fuzz: random corruptions never crash and never yield tensors
// whose data disagrees with their shape.
TEST(SafetensorsTest, RandomCorruptionsAreHandled) {
  const std::string bytes = SerializeSafetensors(SampleTensors(), {{"k", "v"}});
  std::mt19937 rng(1234);
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string mutated = bytes;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % mutated.size();
      switch (rng() % 3) {
        case 0:
          mutated[pos] = static_cast<char>(rng());
          break;
        case 1:
          mutated[pos] = "0123456789[]{},:\" -"[rng() % 19];
          break;
        default:
          mutated.erase(pos, 1 + rng() % 8);
          break;
      }
      if (mutated.empty()) break;
    }
    auto parsed = ParseSafetensors(mutated);
    if (!parsed.ok()) continue;
    ++accepted;
    for (const auto& [name, t] : *parsed) {
      ASSERT_EQ(static_cast<int64_t>(t.data.size()), ShapeElementCount(t.shape)) << name;
    }
  }
  // Flips inside float data are undetectable by design (the bundle's checksums catch
  // them), so some mutants legitimately parse.
  EXPECT_GT(accepted, 0);
}

TEST(SafetensorsTest, SpecialFloatValuesRoundTripBitExact) {
  // The format stores raw bits; the model bundle rejects non-finite values, not this layer.
  TensorMap t;
  t["x"] = {{5},
            {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), -0.0f,
             std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max()}};
  auto parsed = ParseSafetensors(SerializeSafetensors(t));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(std::memcmp(parsed->at("x").data.data(), t["x"].data.data(), 20), 0);
}

}  // namespace
}  // namespace flexgs
