// The streaming rules without transport: CRC-32C, budgets, resume tokens and the
// deterministic message script a stream (and a resumed stream) sends.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/chunk_codec.h"
#include "core/crc32c.h"
#include "core/elastic_selection.h"
#include "core/level_planner.h"
#include "core/resume_token.h"
#include "core/stream_budget.h"
#include "core/stream_script.h"
#include "core/synthetic_scene.h"
#include "core/thread_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_models.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

// ---------------------------------------------------------------------------
// CRC-32C

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

// ---------------------------------------------------------------------------
// Budgets

const std::vector<double> kLadder = {0.01, 0.05, 0.10, 0.15};

TEST(StreamBudgetTest, ResidentBytesPerGaussian) {
  EXPECT_EQ(ResidentBytesPerGaussian(0), 56u + kRenderOverheadBytesPerGaussian);
  EXPECT_EQ(ResidentBytesPerGaussian(3), 236u + kRenderOverheadBytesPerGaussian);
  EXPECT_EQ(ResidentBytesPerGaussian(0), 128u);
}

TEST(StreamBudgetTest, MemoryBudgetAtTheExactBoundary) {
  const uint64_t n = 1'000'000;
  const uint64_t per = ResidentBytesPerGaussian(0);
  const uint64_t min_bytes = 10'000 * per;  // 1% of 1M
  auto ok = DecideBudget({Budget::Kind::kMemoryBytes, static_cast<double>(min_bytes)}, n, 0, kLadder);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->gaussians, 10'000u);
  EXPECT_EQ(ok->resident_bytes, min_bytes);
  EXPECT_EQ(ElasticCount(n, ok->top_ratio), 10'000u);
  EXPECT_DOUBLE_EQ(ok->top_ratio, 0.01);

  auto low = DecideBudget({Budget::Kind::kMemoryBytes, static_cast<double>(min_bytes - 1)}, n, 0, kLadder);
  EXPECT_EQ(low.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(low.status().message()), HasSubstr("1280000 bytes"));
  EXPECT_THAT(std::string(low.status().message()), HasSubstr("1279999 bytes holds 9999 Gaussians"));
  EXPECT_THAT(std::string(low.status().message()), HasSubstr("1% = 10000 Gaussians"));

  // SH 3 costs more per Gaussian, so the same bytes hold fewer.
  const uint64_t per3 = ResidentBytesPerGaussian(3);
  EXPECT_TRUE(DecideBudget({Budget::Kind::kMemoryBytes, 10'000.0 * per3}, n, 3, kLadder).ok());
  EXPECT_EQ(DecideBudget({Budget::Kind::kMemoryBytes, 10'000.0 * per3 - 1}, n, 3, kLadder).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(StreamBudgetTest, MemoryBudgetInTheMiddleAndCapped) {
  const uint64_t n = 1'000'000;
  const uint64_t per = ResidentBytesPerGaussian(1);
  auto mid = DecideBudget({Budget::Kind::kMemoryBytes, 123'457.0 * per + per - 1}, n, 1, kLadder);
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(mid->gaussians, 123'457u);
  EXPECT_EQ(ElasticCount(n, mid->top_ratio), 123'457u);
  EXPECT_EQ(mid->resident_bytes, 123'457u * per);

  auto big = DecideBudget({Budget::Kind::kMemoryBytes, 1e12}, n, 1, kLadder);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->top_ratio, 1.0);
  EXPECT_EQ(big->gaussians, n);
  EXPECT_EQ(big->resident_bytes, n * per);
  auto max = DecideBudget({Budget::Kind::kMemoryBytes, std::ldexp(1.0, 50)}, n, 1, kLadder);
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(max->top_ratio, 1.0);

  // Empty ladder: one Gaussian is the smallest level.
  auto one = DecideBudget({Budget::Kind::kMemoryBytes, 128.0}, n, 0, {});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->gaussians, 1u);
  auto none = DecideBudget({Budget::Kind::kMemoryBytes, 127.0}, n, 0, {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("at least 128 bytes"));
}

// The ratio handed to the planner must hold exactly the budget's count, although
// count / n can be one ulp short of it in floating point.
TEST(StreamBudgetTest, RatioHoldsExactlyTheBudgetedCount) {
  for (uint64_t n : {1u, 7u, 49u, 98u, 100u, 197u, 1000u, 99991u}) {
    for (uint64_t count = 1; count <= std::min<uint64_t>(n, 400); ++count) {
      auto d = DecideBudget({Budget::Kind::kGaussians, static_cast<double>(count)}, n, 0, {});
      ASSERT_TRUE(d.ok()) << d.status();
      ASSERT_EQ(d->gaussians, count) << n;
      ASSERT_EQ(ElasticCount(n, d->top_ratio), count) << n;
      ASSERT_GT(d->top_ratio, 0.0);
      ASSERT_LE(d->top_ratio, 1.0);
    }
  }
}

TEST(StreamBudgetTest, RatioAndGaussianBudgets) {
  const uint64_t n = 1'000'000;
  auto r = DecideBudget({Budget::Kind::kRatio, 0.2}, n, 2, kLadder);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->top_ratio, 0.2);
  EXPECT_EQ(r->gaussians, 200'000u);
  EXPECT_EQ(r->resident_bytes, 200'000u * ResidentBytesPerGaussian(2));
  EXPECT_EQ(DecideBudget({Budget::Kind::kRatio, 1.0}, n, 2, kLadder)->gaussians, n);
  EXPECT_TRUE(DecideBudget({Budget::Kind::kRatio, 0.01}, n, 2, kLadder).ok());
  auto small = DecideBudget({Budget::Kind::kRatio, 0.005}, n, 2, kLadder);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(small.status().message()), HasSubstr("10000 Gaussians"));
  EXPECT_TRUE(DecideBudget({Budget::Kind::kRatio, 0.005}, n, 2, {}).ok());

  auto g = DecideBudget({Budget::Kind::kGaussians, 10'000}, n, 0, kLadder);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->gaussians, 10'000u);
  auto g_low = DecideBudget({Budget::Kind::kGaussians, 9'999}, n, 0, kLadder);
  EXPECT_EQ(g_low.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(g_low.status().message()), HasSubstr("at least 10000 Gaussians"));
  auto g_all = DecideBudget({Budget::Kind::kGaussians, 5e6}, n, 0, kLadder);
  ASSERT_TRUE(g_all.ok());
  EXPECT_EQ(g_all->top_ratio, 1.0);  // e_max is capped at 1
  EXPECT_EQ(g_all->gaussians, n);
}

TEST(StreamBudgetTest, InvalidValuesAreRejectedByName) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  const uint64_t n = 1000;
  for (double v : {0.0, -1.0, -5e9, nan, inf, -inf, std::ldexp(1.0, 50) + 1024, 1e300}) {
    auto st = DecideBudget({Budget::Kind::kMemoryBytes, v}, n, 0, kLadder).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << v;
    EXPECT_THAT(std::string(st.message()), HasSubstr("memory budget")) << v;
  }
  EXPECT_THAT(std::string(DecideBudget({Budget::Kind::kMemoryBytes, -5}, n, 0, kLadder).status().message()),
              HasSubstr("-5"));
  for (double v : {0.0, -0.1, 1.0000001, nan, inf, -inf}) {
    EXPECT_EQ(DecideBudget({Budget::Kind::kRatio, v}, n, 0, kLadder).status().code(),
              absl::StatusCode::kInvalidArgument)
        << v;
  }
  for (double v : {0.0, -1.0, 0.5, 10.5, nan, inf, std::ldexp(1.0, 40) + 1, 1e20}) {
    EXPECT_EQ(DecideBudget({Budget::Kind::kGaussians, v}, n, 0, kLadder).status().code(),
              absl::StatusCode::kInvalidArgument)
        << v;
  }
  EXPECT_EQ(DecideBudget({Budget::Kind::kRatio, 0.5}, 0, 0, kLadder).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecideBudget({Budget::Kind::kRatio, 0.5}, n, 4, kLadder).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecideBudget({Budget::Kind::kRatio, 0.5}, n, 0, {nan}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Resume tokens

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

// ---------------------------------------------------------------------------
// Stream scripts

using ::flexgs::testing::HeuristicTestModel;
using ::flexgs::testing::TrainedLikeTestModel;

// What a client holds after each level, straight from the plan (no codec).
std::vector<GaussianCloud> ExpectedLevels(const Plan& plan, int sh_degree) {
  std::vector<GaussianCloud> out;
  GaussianCloud state;
  state.sh_degree = sh_degree;
  for (const PlanLevel& level : plan.levels) {
    for (size_t i = 0; i < level.patches.size() / kPatchStride; ++i) {
      const float* p = &level.patches[i * kPatchStride];
      std::copy(p, p + 3, &state.positions[i * 3]);
      std::copy(p + 3, p + 6, &state.log_scales[i * 3]);
      std::copy(p + 6, p + 10, &state.rotations[i * 4]);
    }
    const GaussianCloud a = level.added_gaussians.WithShDegree(sh_degree);
    const size_t old = state.size();
    state.Resize(old + a.size());
    std::copy(a.positions.begin(), a.positions.end(), state.positions.begin() + old * 3);
    std::copy(a.log_scales.begin(), a.log_scales.end(), state.log_scales.begin() + old * 3);
    std::copy(a.rotations.begin(), a.rotations.end(), state.rotations.begin() + old * 4);
    std::copy(a.opacity_logits.begin(), a.opacity_logits.end(), state.opacity_logits.begin() + old);
    std::copy(a.sh_dc.begin(), a.sh_dc.end(), state.sh_dc.begin() + old * 3);
    std::copy(a.sh_rest.begin(), a.sh_rest.end(), state.sh_rest.begin() + old * a.rest_coeffs() * 3);
    out.push_back(state);
  }
  return out;
}

// Largest |a - b| tolerated per component, from the spread of the expected values:
// a fraction of the range for the range-quantized attributes.
float Spread(const std::vector<float>& v, int stride, int c) {
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = c; i < v.size(); i += stride) {
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
  }
  return v.size() > static_cast<size_t>(c) ? hi - lo : 0.0f;
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, int stride, double fraction,
                const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (int c = 0; c < stride; ++c) {
    const double tol = fraction * Spread(want, stride, c) + 1e-5;
    for (size_t i = c; i < got.size(); i += stride) {
      ASSERT_NEAR(got[i], want[i], tol) << what << " component " << c << " of Gaussian " << i / stride;
    }
  }
}

// Covariance R diag(exp(2 s)) R^T (row-major 3x3) of Gaussian i: what a quantized
// block preserves, since the encoder may permute axes and pick an equivalent quaternion.
std::array<double, 9> Covariance(const GaussianCloud& g, size_t i) {
  const float* q = &g.rotations[i * 4];
  const double n = std::sqrt(double{q[0]} * q[0] + double{q[1]} * q[1] + double{q[2]} * q[2] + double{q[3]} * q[3]);
  const double w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n;
  const double r[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z),     2 * (x * z + w * y),
                       2 * (x * y + w * z),     1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                       2 * (x * z - w * y),     2 * (y * z + w * x),     1 - 2 * (x * x + y * y)};
  double var[3];
  for (int a = 0; a < 3; ++a) var[a] = std::exp(2.0 * g.log_scales[i * 3 + a]);
  std::array<double, 9> c{};
  for (int row = 0; row < 3; ++row)
    for (int col = 0; col < 3; ++col)
      for (int a = 0; a < 3; ++a) c[row * 3 + col] += r[row * 3 + a] * var[a] * r[col * 3 + a];
  return c;
}

// Tolerances follow the bit depths documented in core/chunk_codec.h, against the
// spread of the whole level (a block's range is never wider), with some margin.
void ExpectQuantizedMatch(const GaussianCloud& got, const GaussianCloud& want) {
  ExpectNear(got.positions, want.positions, 3, 1.0 / 30000, "position");  // 16 bits
  ExpectNear(got.sh_dc, want.sh_dc, 3, 1.0 / 50, "SH DC");               // 5 bits
  ASSERT_EQ(got.size(), want.size());
  float s_lo = INFINITY, s_hi = -INFINITY;
  for (float s : want.log_scales) {
    s_lo = std::min(s_lo, s);
    s_hi = std::max(s_hi, s);
  }
  const double scale_tol = (s_hi - s_lo) / 100.0 + 1e-5;  // 6 bits per (sorted) axis
  for (size_t i = 0; i < got.size(); ++i) {
    const auto sig = [](float l) { return 1.0 / (1.0 + std::exp(-static_cast<double>(l))); };
    ASSERT_NEAR(sig(got.opacity_logits[i]), sig(want.opacity_logits[i]), 1.0 / 200) << "opacity " << i;  // 7 bits
    // Axes may come back permuted: compare sorted scales, then the shape itself.
    std::array<float, 3> gs, ws;
    std::copy_n(&got.log_scales[i * 3], 3, gs.begin());
    std::copy_n(&want.log_scales[i * 3], 3, ws.begin());
    std::sort(gs.begin(), gs.end());
    std::sort(ws.begin(), ws.end());
    for (int a = 0; a < 3; ++a) ASSERT_NEAR(gs[a], ws[a], scale_tol) << "sorted log-scale " << a << " of " << i;
    const float* q = &got.rotations[i * 4];
    ASSERT_NEAR(double{q[0]} * q[0] + double{q[1]} * q[1] + double{q[2]} * q[2] + double{q[3]} * q[3], 1.0, 1e-4);
    const std::array<double, 9> cg = Covariance(got, i), cw = Covariance(want, i);
    const double lambda_max = std::exp(2.0 * ws[2]);
    // Scale error (relative 2 * scale_tol) plus a rotation error of a few hundredths
    // of a radian (7-bit smallest-three), both relative to the largest axis.
    const double cov_tol = lambda_max * (std::expm1(2 * scale_tol) + 0.08);
    for (int e = 0; e < 9; ++e) ASSERT_NEAR(cg[e], cw[e], cov_tol) << "covariance entry " << e << " of " << i;
  }
  // SH rest: uniform step 0.06 (half step 0.03), coarser only where a value would
  // need more than 127 steps (then max |v| / 127).
  const int k3 = want.rest_coeffs() * 3;
  for (int c = 0; c < k3; ++c) {
    float max_abs = 0;
    for (size_t i = c; i < want.sh_rest.size(); i += k3) max_abs = std::max(max_abs, std::abs(want.sh_rest[i]));
    const double tol = std::max(0.031, max_abs / 200.0);
    for (size_t i = c; i < want.sh_rest.size(); i += k3) {
      ASSERT_NEAR(got.sh_rest[i], want.sh_rest[i], tol) << "SH rest " << c;
    }
  }
}

void Append(GaussianCloud& state, const GaussianCloud& a) {
  const size_t old = state.size();
  state.Resize(old + a.size());
  std::copy(a.positions.begin(), a.positions.end(), state.positions.begin() + old * 3);
  std::copy(a.log_scales.begin(), a.log_scales.end(), state.log_scales.begin() + old * 3);
  std::copy(a.rotations.begin(), a.rotations.end(), state.rotations.begin() + old * 4);
  std::copy(a.opacity_logits.begin(), a.opacity_logits.end(), state.opacity_logits.begin() + old);
  std::copy(a.sh_dc.begin(), a.sh_dc.end(), state.sh_dc.begin() + old * 3);
  std::copy(a.sh_rest.begin(), a.sh_rest.end(), state.sh_rest.begin() + old * a.rest_coeffs() * 3);
}

// Replays a script as a client does -- decode each block as it arrives, apply in
// order -- and checks structure, chunk sizes, summaries and each level's held set.
void CheckScriptReplay(const Plan& plan, const StreamScript& script, const ScriptOptions& options) {
  const std::vector<GaussianCloud> expected = ExpectedLevels(plan, options.sh_degree);
  const bool lossless = options.encoding == ChunkEncoding::kLossless;
  ASSERT_GE(script.items.size(), 2 + plan.levels.size());
  EXPECT_EQ(script.items.front().kind, StreamItemKind::kHeader);
  EXPECT_EQ(script.items.back().kind, StreamItemKind::kTrailer);
  ASSERT_EQ(script.levels.size(), plan.levels.size());
  EXPECT_EQ(script.sh_degree, options.sh_degree);
  EXPECT_EQ(script.encoding, options.encoding);

  GaussianCloud state;
  state.sh_degree = options.sh_degree;
  size_t item = 1;
  uint64_t total_payload = 0;
  for (size_t k = 0; k < plan.levels.size(); ++k) {
    SCOPED_TRACE(::testing::Message() << "level " << k);
    const PlanLevel& level = plan.levels[k];
    const StreamLevelSummary& summary = script.levels[k];
    EXPECT_EQ(summary.first_item, item);
    EXPECT_EQ(summary.ratio, level.ratio);
    EXPECT_EQ(summary.gaussians, level.count);
    EXPECT_EQ(summary.added, level.added.size());
    EXPECT_EQ(summary.patched, level.patches.size() / kPatchStride);
    uint64_t payload = 0, patched = 0;
    const size_t held_before = state.size();
    bool seen_gaussians = false;
    for (;; ++item) {
      ASSERT_LT(item, script.items.size() - 1);
      const StreamItem& it = script.items[item];
      ASSERT_EQ(it.level, k) << "item " << item;
      if (it.kind == StreamItemKind::kLevelEnd) break;
      ASSERT_TRUE(it.kind == StreamItemKind::kPatches || it.kind == StreamItemKind::kGaussians) << item;
      ASSERT_LE(it.data.size(), options.max_chunk_bytes - kChunkEnvelopeBytes) << "item " << item;
      ASSERT_GT(it.count, 0u);
      payload += it.data.size();
      auto info = ReadBlockInfo(it.data);
      ASSERT_TRUE(info.ok()) << info.status();
      EXPECT_EQ(info->encoding, options.encoding);
      EXPECT_EQ(info->count, it.count);
      if (it.kind == StreamItemKind::kPatches) {
        ASSERT_FALSE(seen_gaussians) << "patches after additions in item " << item;
        ASSERT_EQ(it.first, patched) << "patch blocks must be contiguous, in client order";
        ASSERT_LE(it.first + it.count, held_before);
        auto patches = DecodePatchBlock(it.data);
        ASSERT_TRUE(patches.ok()) << patches.status();
        ASSERT_EQ(patches->size(), size_t{it.count} * kPatchStride);
        for (size_t i = 0; i < it.count; ++i) {
          const float* p = &(*patches)[i * kPatchStride];
          const size_t dst = it.first + i;
          std::copy(p, p + 3, &state.positions[dst * 3]);
          std::copy(p + 3, p + 6, &state.log_scales[dst * 3]);
          std::copy(p + 6, p + 10, &state.rotations[dst * 4]);
        }
        patched += it.count;
      } else {
        seen_gaussians = true;
        ASSERT_EQ(it.first, state.size()) << "Gaussian blocks must append in order";
        auto block = DecodeGaussianBlock(it.data);
        ASSERT_TRUE(block.ok()) << block.status();
        ASSERT_EQ(block->size(), it.count);
        ASSERT_EQ(block->sh_degree, options.sh_degree);
        Append(state, *block);
      }
    }
    EXPECT_EQ(summary.level_end_item, item);
    EXPECT_EQ(patched, summary.patched);
    EXPECT_EQ(payload, summary.payload_bytes);
    total_payload += payload;
    ++item;

    // At LEVEL_END the client holds exactly the planner's level.
    ASSERT_EQ(state.size(), level.count);
    const GaussianCloud& want = expected[k];
    if (lossless) {
      EXPECT_EQ(state.positions, want.positions);
      EXPECT_EQ(state.log_scales, want.log_scales);
      EXPECT_EQ(state.rotations, want.rotations);
      EXPECT_EQ(state.opacity_logits, want.opacity_logits);
      EXPECT_EQ(state.sh_dc, want.sh_dc);
      EXPECT_EQ(state.sh_rest, want.sh_rest);
    } else {
      ExpectQuantizedMatch(state, want);
    }
  }
  EXPECT_EQ(item, script.items.size() - 1);
  EXPECT_EQ(total_payload, script.payload_bytes);
  EXPECT_GT(script.ByteSize(), script.payload_bytes);
}

void ExpectIdentical(const StreamScript& a, const StreamScript& b) {
  ASSERT_EQ(a.items.size(), b.items.size());
  for (size_t i = 0; i < a.items.size(); ++i) {
    ASSERT_EQ(a.items[i].kind, b.items[i].kind) << i;
    ASSERT_EQ(a.items[i].level, b.items[i].level) << i;
    ASSERT_EQ(a.items[i].first, b.items[i].first) << i;
    ASSERT_EQ(a.items[i].count, b.items[i].count) << i;
    ASSERT_TRUE(a.items[i].data == b.items[i].data) << "item " << i << " differs";
  }
  ASSERT_EQ(a.levels.size(), b.levels.size());
  for (size_t k = 0; k < a.levels.size(); ++k) {
    EXPECT_EQ(a.levels[k].payload_bytes, b.levels[k].payload_bytes);
    EXPECT_EQ(a.levels[k].first_item, b.levels[k].first_item);
    EXPECT_EQ(a.levels[k].level_end_item, b.levels[k].level_end_item);
  }
  EXPECT_EQ(a.payload_bytes, b.payload_bytes);
  EXPECT_EQ(a.ByteSize(), b.ByteSize());
}

TEST(StreamScriptTest, HeuristicLosslessScriptReplaysEveryLevelExactly) {
  ThreadPool pool(2);
  const ElasticModel m = HeuristicTestModel(5000, 5, 1);
  auto plan = PlanLevels(m, {.top_ratio = 0.2, .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 5u);
  const ScriptOptions options{.encoding = ChunkEncoding::kLossless, .sh_degree = 1, .max_chunk_bytes = 4096};
  auto script = BuildStreamScript(*plan, options);
  ASSERT_TRUE(script.ok()) << script.status();
  for (const StreamItem& it : script->items) EXPECT_NE(it.kind, StreamItemKind::kPatches);  // no transform
  // Small chunks: most levels need many blocks.
  EXPECT_GT(script->items.size(), 2 + 5 + 1000 / GaussiansPerBlock(4096, ChunkEncoding::kLossless, 1));
  CheckScriptReplay(*plan, *script, options);
}

TEST(StreamScriptTest, TrainedLosslessScriptsPatchAndReplayExactly) {
  ThreadPool pool(2);
  for (uint64_t seed : {1, 2}) {
    SCOPED_TRACE(seed);
    const ElasticModel m = TrainedLikeTestModel(3000, seed, 2);
    auto plan = PlanLevels(m, {.top_ratio = 0.3, .ladder = {0.02, 0.07, 0.15}}, &pool);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_EQ(plan->levels.size(), 4u);
    ASSERT_FALSE(plan->levels[1].patches.empty());
    for (int sh : {2, 0}) {  // full SH, and bands dropped for a small client
      const ScriptOptions options{.encoding = ChunkEncoding::kLossless, .sh_degree = sh, .max_chunk_bytes = 4096};
      auto script = BuildStreamScript(*plan, options);
      ASSERT_TRUE(script.ok()) << script.status();
      CheckScriptReplay(*plan, *script, options);
      size_t patch_blocks = 0;
      for (const StreamItem& it : script->items) patch_blocks += it.kind == StreamItemKind::kPatches;
      EXPECT_GT(patch_blocks, 3u);
    }
  }
}

// Poses fixed at insertion, streamed to 100 % losslessly: no patch block before the last
// level, whose patches bring every earlier Gaussian back to the model's own, so the
// client ends with the model's Gaussians bit for bit; patch bytes are counted per level.
TEST(StreamScriptTest, InsertionPosesStreamTheFullSceneExactly) {
  ThreadPool pool(2);
  ElasticModel m = ::flexgs::testing::RatioDependentTestModel(3000, 3, /*sh_degree=*/1);
  m.pose_at_insertion = true;
  auto plan = PlanLevels(m, {.top_ratio = 1.0, .ladder = {0.02, 0.07, 0.15}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 4u);
  const ScriptOptions options{.encoding = ChunkEncoding::kLossless, .sh_degree = 1, .max_chunk_bytes = 4096};
  auto script = BuildStreamScript(*plan, options);
  ASSERT_TRUE(script.ok()) << script.status();
  CheckScriptReplay(*plan, *script, options);
  std::vector<uint64_t> patch_bytes(plan->levels.size(), 0);
  for (const StreamItem& it : script->items) {
    if (it.kind == StreamItemKind::kPatches) patch_bytes[it.level] += it.data.size();
  }
  for (size_t k = 0; k < plan->levels.size(); ++k) {
    EXPECT_EQ(script->levels[k].patch_bytes, patch_bytes[k]) << k;
    EXPECT_EQ(patch_bytes[k] > 0, k == 3) << k;
  }
  auto held = LevelCloud(*plan, 3);
  ASSERT_TRUE(held.ok());
  std::vector<uint32_t> order;
  for (const PlanLevel& l : plan->levels) order.insert(order.end(), l.added.begin(), l.added.end());
  const GaussianCloud input = m.gaussians.Gather(order);
  EXPECT_EQ(held->positions, input.positions);
  EXPECT_EQ(held->log_scales, input.log_scales);
  EXPECT_EQ(held->rotations, input.rotations);
}

TEST(StreamScriptTest, QuantizedScriptsDecodeWithinTolerance) {
  ThreadPool pool(2);
  const ElasticModel m = TrainedLikeTestModel(4000, 7, 3);
  auto plan = PlanLevels(m, {.top_ratio = 0.25, .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (int sh : {3, 1}) {
    for (uint32_t chunk : {4096u, 65536u}) {
      SCOPED_TRACE(::testing::Message() << "sh " << sh << " chunk " << chunk);
      const ScriptOptions options{.encoding = ChunkEncoding::kQuantized, .sh_degree = sh, .max_chunk_bytes = chunk};
      auto script = BuildStreamScript(*plan, options);
      ASSERT_TRUE(script.ok()) << script.status();
      CheckScriptReplay(*plan, *script, options);
    }
  }
}

TEST(StreamScriptTest, ScriptsAreByteIdenticalAcrossBuilds) {
  ThreadPool one(1), two(2);
  const ElasticModel m = TrainedLikeTestModel(3000, 9, 1);
  const PlanRequest req{.top_ratio = 0.2, .ladder = {}};
  auto p1 = PlanLevels(m, req, &one);
  auto p2 = PlanLevels(m, req, &two);
  ASSERT_TRUE(p1.ok() && p2.ok());
  for (ChunkEncoding enc : {ChunkEncoding::kQuantized, ChunkEncoding::kLossless}) {
    const ScriptOptions options{.encoding = enc, .sh_degree = 1, .max_chunk_bytes = 8192};
    auto a = BuildStreamScript(*p1, options);
    auto b = BuildStreamScript(*p2, options);
    auto c = BuildStreamScript(*p1, options);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    ExpectIdentical(*a, *b);
    ExpectIdentical(*a, *c);
  }
}

// A rung that adds nothing (floor(e N) unchanged) still gets its LEVEL_END, and one
// big chunk per level carries everything.
TEST(StreamScriptTest, EmptyLevelsAndLargeChunks) {
  ThreadPool pool(1);
  const ElasticModel m = HeuristicTestModel(100, 3, 2);
  auto plan = PlanLevels(m, {.top_ratio = 0.5, .ladder = {0.01, 0.015, 0.2}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 4u);
  ASSERT_TRUE(plan->levels[1].added.empty());
  const ScriptOptions options{.encoding = ChunkEncoding::kLossless, .sh_degree = 2, .max_chunk_bytes = 4 << 20};
  auto script = BuildStreamScript(*plan, options);
  ASSERT_TRUE(script.ok()) << script.status();
  // header, (block, end), (end), (block, end), (block, end), trailer
  ASSERT_EQ(script->items.size(), 9u);
  EXPECT_EQ(script->items[3].kind, StreamItemKind::kLevelEnd);
  EXPECT_EQ(script->levels[1].first_item, 3u);
  EXPECT_EQ(script->levels[1].level_end_item, 3u);
  EXPECT_EQ(script->levels[1].payload_bytes, 0u);
  CheckScriptReplay(*plan, *script, options);
}

TEST(StreamScriptTest, BadOptionsAreRejected) {
  ThreadPool pool(1);
  const ElasticModel m = HeuristicTestModel(500, 4, 1);
  auto plan = PlanLevels(m, {.top_ratio = 0.1, .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok());
  const auto code = [&](ChunkEncoding enc, int sh, uint32_t chunk) {
    return BuildStreamScript(*plan, {.encoding = enc, .sh_degree = sh, .max_chunk_bytes = chunk}).status().code();
  };
  const auto q = ChunkEncoding::kQuantized;
  EXPECT_EQ(code(q, 1, 4096), absl::StatusCode::kOk);
  EXPECT_EQ(code(q, 0, 4 << 20), absl::StatusCode::kOk);
  EXPECT_EQ(code(q, 2, 4096), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(q, -1, 4096), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(q, 1, 4095), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(q, 1, 0), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(q, 1, (4 << 20) + 1), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(static_cast<ChunkEncoding>(0), 1, 4096), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(static_cast<ChunkEncoding>(3), 1, 4096), absl::StatusCode::kInvalidArgument);

  Plan broken = *plan;
  broken.levels[1].count += 1;
  EXPECT_EQ(BuildStreamScript(broken, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flexgs
