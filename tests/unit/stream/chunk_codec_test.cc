// Chunk codec: exact lossless round trips, quantized error bounds derived from the
// bit depths and block ranges, determinism, hostile and corrupted input, chunk-size
// guarantees, and rendered quality and size on the shared scenes.
#include "stream/chunk_codec.h"

#include <zstd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <thread>

#include <Eigen/Geometry>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/ply_io.h"
#include "render/cpu_rasterizer.h"
#include "render/image_metrics.h"
#include "scene/orbit.h"
#include "scene/synthetic_scene.h"
#include "stream/level_planner.h"
#include "tests/support/test_util.h"

namespace flexgs {
namespace {

constexpr ChunkEncoding kQ = ChunkEncoding::kQuantized;
constexpr ChunkEncoding kL = ChunkEncoding::kLossless;

// Random Gaussians covering every attribute, rotations deliberately not unit.
GaussianCloud RandomCloud(size_t n, int sh_degree, uint64_t seed) {
  SplitMix64 rng(seed);
  GaussianCloud c;
  c.sh_degree = sh_degree;
  c.Resize(n);
  for (size_t i = 0; i < n; ++i) {
    for (int d = 0; d < 3; ++d) {
      c.positions[i * 3 + d] = static_cast<float>(rng.Normal() * 2.0 + d);
      c.log_scales[i * 3 + d] = static_cast<float>(rng.Uniform(-6.0, 0.0));
      c.sh_dc[i * 3 + d] = static_cast<float>(rng.Normal());
    }
    for (int d = 0; d < 4; ++d) c.rotations[i * 4 + d] = static_cast<float>(rng.Normal() * 2.0);
    c.opacity_logits[i] = static_cast<float>(rng.Uniform(-6.0, 6.0));
  }
  for (float& v : c.sh_rest) v = static_cast<float>(rng.Normal() * 0.2);
  return c;
}

GaussianCloud MortonSorted(const GaussianCloud& c) {
  std::array<float, 3> lo{}, hi{};
  for (int d = 0; d < 3; ++d) {
    lo[d] = hi[d] = c.positions[d];
    for (size_t i = 0; i < c.size(); ++i) {
      lo[d] = std::min(lo[d], c.positions[i * 3 + d]);
      hi[d] = std::max(hi[d], c.positions[i * 3 + d]);
    }
  }
  std::vector<std::pair<uint64_t, uint32_t>> order;
  for (size_t i = 0; i < c.size(); ++i)
    order.push_back({MortonCode(&c.positions[i * 3], lo, hi), static_cast<uint32_t>(i)});
  std::sort(order.begin(), order.end());
  std::vector<uint32_t> idx;
  for (const auto& o : order) idx.push_back(o.second);
  return c.Gather(idx);
}

void Append(GaussianCloud& into, const GaussianCloud& part) {
  into.sh_degree = part.sh_degree;
  const auto cat = [](std::vector<float>& a, const std::vector<float>& b) { a.insert(a.end(), b.begin(), b.end()); };
  cat(into.positions, part.positions);
  cat(into.log_scales, part.log_scales);
  cat(into.rotations, part.rotations);
  cat(into.opacity_logits, part.opacity_logits);
  cat(into.sh_dc, part.sh_dc);
  cat(into.sh_rest, part.sh_rest);
}

struct Encoded {
  std::vector<std::string> blocks;
  size_t bytes = 0;
};

Encoded EncodeInBlocks(const GaussianCloud& c, size_t block, ChunkEncoding enc, int sh) {
  Encoded e;
  for (size_t b = 0; b < c.size(); b += block) {
    e.blocks.push_back(EncodeGaussianBlock(c, b, std::min(c.size(), b + block), enc, sh));
    e.bytes += e.blocks.back().size();
  }
  return e;
}

GaussianCloud DecodeAll(const Encoded& e) {
  GaussianCloud out;
  for (const std::string& b : e.blocks) {
    auto d = DecodeGaussianBlock(b);
    EXPECT_TRUE(d.ok()) << d.status();
    if (d.ok()) Append(out, *d);
  }
  return out;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void ExpectBitEqual(const GaussianCloud& a, const GaussianCloud& b) {
  EXPECT_EQ(a.sh_degree, b.sh_degree);
  EXPECT_TRUE(BitEqual(a.positions, b.positions));
  EXPECT_TRUE(BitEqual(a.log_scales, b.log_scales));
  EXPECT_TRUE(BitEqual(a.rotations, b.rotations));
  EXPECT_TRUE(BitEqual(a.opacity_logits, b.opacity_logits));
  EXPECT_TRUE(BitEqual(a.sh_dc, b.sh_dc));
  EXPECT_TRUE(BitEqual(a.sh_rest, b.sh_rest));
}

// A decoded cloud a client could render: consistent sizes, finite values and (from
// the quantized encoding) unit quaternions with w >= 0.
::testing::AssertionResult IsValidFinite(const GaussianCloud& c, bool canonical_rotations = true) {
  if (absl::Status st = c.Validate(); !st.ok()) return ::testing::AssertionFailure() << st;
  for (const std::vector<float>* v :
       {&c.positions, &c.log_scales, &c.rotations, &c.opacity_logits, &c.sh_dc, &c.sh_rest}) {
    for (float x : *v)
      if (!std::isfinite(x)) return ::testing::AssertionFailure() << "non-finite value";
  }
  for (size_t i = 0; canonical_rotations && i < c.size(); ++i) {
    const float* q = &c.rotations[i * 4];
    const double norm =
        std::sqrt(double(q[0]) * q[0] + double(q[1]) * q[1] + double(q[2]) * q[2] + double(q[3]) * q[3]);
    if (std::abs(norm - 1.0) > 1e-5 || q[0] < 0)
      return ::testing::AssertionFailure() << "rotation " << i << " not canonical";
  }
  return ::testing::AssertionSuccess();
}

Eigen::Matrix3d RotationMatrix(const float* q) {
  return Eigen::Quaterniond(q[0], q[1], q[2], q[3]).normalized().toRotationMatrix();
}

// Per-axis descending order of a Gaussian's log-scales, as the encoder sorts them.
std::array<int, 3> ScaleOrder(const float* s) {
  std::array<int, 3> order = {0, 1, 2};
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return s[a] > s[b]; });
  return order;
}

struct MinMax {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void Add(double v) { lo = std::min(lo, v), hi = std::max(hi, v); }
  double range() const { return hi - lo; }
  double mag() const { return std::max(std::abs(lo), std::abs(hi)); }
};

// Half a quantization step of `bits` over `r`, plus float rounding of the result.
double UnitBound(const MinMax& r, int bits) {
  return 0.5 * r.range() / ((1 << bits) - 1) * (1 + 1e-6) + r.mag() * 1.2e-7;
}

// Worst rotation error of 3 x 7-bit smallest-three: components off by at most
// (1/sqrt2)/63/2 = 0.0056, w rebuilt from them (w >= 1/2) off by at most 0.024, so
// |q - q'| < 0.026 and the rotation angle < 0.06 rad.
constexpr double kMaxRotationAngle = 0.06;

// Checks geometry of items [begin, end) (one block): decoded positions within half a
// step of the block's bounds, scales (axis-sorted) within half a step of the block's
// sorted-axis ranges, and each decoded body axis within kMaxRotationAngle of the
// original axis it was sorted from.
void ExpectGeometryWithinBounds(const float* pos, const float* scale, const float* rot, size_t stride_pos,
                                size_t stride_scale, size_t stride_rot, const float* dpos, const float* dscale,
                                const float* drot, size_t dstride_pos, size_t dstride_scale, size_t dstride_rot,
                                size_t n) {
  MinMax pos_r[3], scale_r[3];
  for (size_t i = 0; i < n; ++i) {
    const std::array<int, 3> order = ScaleOrder(scale + i * stride_scale);
    for (int d = 0; d < 3; ++d) {
      pos_r[d].Add(pos[i * stride_pos + d]);
      scale_r[d].Add(scale[i * stride_scale + order[d]]);
    }
  }
  const double cos_max = std::cos(kMaxRotationAngle);
  int failures = 0;
  for (size_t i = 0; i < n && failures < 5; ++i) {
    const std::array<int, 3> order = ScaleOrder(scale + i * stride_scale);
    const Eigen::Matrix3d r = RotationMatrix(rot + i * stride_rot);
    const Eigen::Matrix3d dr = RotationMatrix(drot + i * dstride_rot);
    for (int d = 0; d < 3; ++d) {
      const double dp = std::abs(double(dpos[i * dstride_pos + d]) - pos[i * stride_pos + d]);
      const double ds = std::abs(double(dscale[i * dstride_scale + d]) - scale[i * stride_scale + order[d]]);
      const double dot = std::abs(r.col(order[d]).dot(dr.col(d)));
      const bool ok = dp <= UnitBound(pos_r[d], kChunkPositionBits) && ds <= UnitBound(scale_r[d], kChunkScaleBits) &&
                      dot >= cos_max;
      if (!ok) ++failures;
      EXPECT_TRUE(ok) << "item " << i << " axis " << d << ": position error " << dp << ", log-scale error " << ds
                      << ", axis cosine " << dot;
    }
    const float* q = drot + i * dstride_rot;
    EXPECT_NEAR(double(q[0]) * q[0] + double(q[1]) * q[1] + double(q[2]) * q[2] + double(q[3]) * q[3], 1.0, 1e-5);
    EXPECT_GE(q[0], 0.0f);
  }
}

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Quantized Gaussians of one block against the originals, attribute by attribute.
void ExpectQuantizedWithinBounds(const GaussianCloud& in, size_t begin, size_t end, int sh, const GaussianCloud& out) {
  const size_t n = end - begin;
  ASSERT_EQ(out.size(), n);
  ASSERT_EQ(out.sh_degree, sh);
  ASSERT_TRUE(IsValidFinite(out));
  ExpectGeometryWithinBounds(&in.positions[begin * 3], &in.log_scales[begin * 3], &in.rotations[begin * 4], 3, 3, 4,
                             out.positions.data(), out.log_scales.data(), out.rotations.data(), 3, 3, 4, n);
  MinMax dc_r[3];
  for (size_t i = begin; i < end; ++i)
    for (int d = 0; d < 3; ++d) dc_r[d].Add(in.sh_dc[i * 3 + d]);
  const size_t k_in = in.rest_coeffs(), k = ShRestCoeffs(sh);
  double step[4] = {0, 0, 0, 0};
  for (int band = 1; band <= sh; ++band) {
    double max_abs = 0;
    for (size_t i = begin; i < end; ++i)
      for (size_t c = 0; c < 3; ++c)
        for (size_t j = 0; j < k; ++j)
          if ((j < 3 ? 1 : j < 8 ? 2 : 3) == band)
            max_abs = std::max(max_abs, std::abs(double(in.sh_rest[i * 3 * k_in + c * k_in + j])));
    step[band] = std::max<double>(kChunkShRestStep, max_abs / kChunkShRestMaxCode);
  }
  int failures = 0;
  for (size_t i = 0; i < n && failures < 5; ++i) {
    const size_t s = begin + i;
    const double op_err = std::abs(Sigmoid(out.opacity_logits[i]) - Sigmoid(in.opacity_logits[s]));
    if (op_err > 0.5 / 127 + 1e-6) ++failures;
    EXPECT_LE(op_err, 0.5 / 127 + 1e-6) << "opacity of " << i;
    for (int d = 0; d < 3; ++d) {
      const double err = std::abs(double(out.sh_dc[i * 3 + d]) - in.sh_dc[s * 3 + d]);
      if (err > UnitBound(dc_r[d], kChunkDcBits)) ++failures;
      EXPECT_LE(err, UnitBound(dc_r[d], kChunkDcBits)) << "SH DC of " << i;
    }
    for (size_t c = 0; c < 3; ++c)
      for (size_t j = 0; j < k; ++j) {
        const double err =
            std::abs(double(out.sh_rest[i * 3 * k + c * k + j]) - in.sh_rest[s * 3 * k_in + c * k_in + j]);
        const double bound = 0.5 * step[j < 3 ? 1 : j < 8 ? 2 : 3] * (1 + 1e-6);
        if (err > bound) ++failures;
        EXPECT_LE(err, bound) << "SH rest " << c << "," << j << " of " << i;
      }
  }
}

// ---------------------------------------------------------------------------

TEST(ChunkCodecTest, LosslessRoundTripIsBitExact) {
  for (int sh : {0, 3}) {
    GaussianCloud c = RandomCloud(1000, sh, 11 + sh);
    // Awkward but finite floats survive too.
    c.positions[0] = -0.0f;
    c.positions[1] = std::numeric_limits<float>::denorm_min();
    c.log_scales[0] = std::numeric_limits<float>::max();
    c.opacity_logits[0] = -std::numeric_limits<float>::max();
    for (size_t block : {size_t{1000}, size_t{333}}) {
      const GaussianCloud out = DecodeAll(EncodeInBlocks(c, block, kL, sh));
      ExpectBitEqual(out, c);
    }
  }
}

TEST(ChunkCodecTest, LosslessDropsHigherShBands) {
  const GaussianCloud c = RandomCloud(200, 3, 5);
  auto out = DecodeGaussianBlock(EncodeGaussianBlock(c, 0, c.size(), kL, 1));
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectBitEqual(*out, c.WithShDegree(1));
}

TEST(ChunkCodecTest, LosslessReplacesNonFiniteValues) {
  GaussianCloud c = RandomCloud(4, 0, 1);
  c.positions[0] = std::numeric_limits<float>::quiet_NaN();
  c.log_scales[1] = std::numeric_limits<float>::infinity();
  c.opacity_logits[2] = -std::numeric_limits<float>::infinity();
  auto out = DecodeGaussianBlock(EncodeGaussianBlock(c, 0, 4, kL, 0));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->positions[0], 0.0f);
  EXPECT_EQ(out->log_scales[1], std::numeric_limits<float>::max());
  EXPECT_EQ(out->opacity_logits[2], -kOpacityLogitLimit);
  EXPECT_EQ(out->positions[1], c.positions[1]);
}

TEST(ChunkCodecTest, QuantizedRoundTripWithinBounds) {
  for (int sh : {0, 1, 3}) {
    const GaussianCloud c = MortonSorted(RandomCloud(3000, 3, 21 + sh));
    for (size_t begin = 0; begin < c.size(); begin += 1024) {
      const size_t end = std::min(c.size(), begin + 1024);
      auto out = DecodeGaussianBlock(EncodeGaussianBlock(c, begin, end, kQ, sh));
      ASSERT_TRUE(out.ok()) << out.status();
      SCOPED_TRACE(::testing::Message() << "SH " << sh << " block at " << begin);
      ExpectQuantizedWithinBounds(c, begin, end, sh, *out);
    }
  }
}

TEST(ChunkCodecTest, QuantizedKeepsTheShapeOfEachGaussian) {
  // Axis sorting and quaternion canonicalisation must not change covariances.
  const GaussianCloud c = RandomCloud(2000, 0, 8);
  auto out = DecodeGaussianBlock(EncodeGaussianBlock(c, 0, c.size(), kQ, 0));
  ASSERT_TRUE(out.ok()) << out.status();
  const auto cov = [](const float* q, const float* s) {
    const Eigen::Matrix3d r = RotationMatrix(q);
    const Eigen::Vector3d var(std::exp(2.0 * s[0]), std::exp(2.0 * s[1]), std::exp(2.0 * s[2]));
    return Eigen::Matrix3d(r * var.asDiagonal() * r.transpose());
  };
  // Log-scales over [-6, 0] at 6 bits: <= 0.048 off, i.e. variances within ~10%, plus
  // the rotation error times the largest variance.
  for (size_t i = 0; i < c.size(); ++i) {
    const Eigen::Matrix3d a = cov(&c.rotations[i * 4], &c.log_scales[i * 3]);
    const Eigen::Matrix3d b = cov(&out->rotations[i * 4], &out->log_scales[i * 3]);
    const double largest = std::exp(2.0 * *std::max_element(&c.log_scales[i * 3], &c.log_scales[i * 3] + 3));
    ASSERT_LE((a - b).norm(), largest * (0.11 + 2 * kMaxRotationAngle) * std::sqrt(3.0)) << "Gaussian " << i;
  }
}

TEST(ChunkCodecTest, QuantizedHandlesDegenerateAndNonFiniteInput) {
  GaussianCloud c = RandomCloud(50, 1, 3);
  for (int d = 0; d < 4; ++d) c.rotations[d] = 0;                    // zero quaternion -> identity
  c.log_scales[0] = -1, c.log_scales[1] = -2, c.log_scales[2] = -3;  // already axis-sorted
  c.rotations[4] = std::numeric_limits<float>::quiet_NaN();
  c.positions[3] = std::numeric_limits<float>::infinity();
  c.log_scales[5] = std::numeric_limits<float>::quiet_NaN();
  c.opacity_logits[6] = std::numeric_limits<float>::infinity();
  c.opacity_logits[7] = std::numeric_limits<float>::quiet_NaN();
  c.sh_rest[8] = -std::numeric_limits<float>::infinity();
  auto out = DecodeGaussianBlock(EncodeGaussianBlock(c, 0, c.size(), kQ, 1));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(IsValidFinite(*out));
  EXPECT_FLOAT_EQ(out->rotations[0], 1.0f);
  EXPECT_FLOAT_EQ(out->opacity_logits[6], kOpacityLogitLimit);
  // Identical Gaussians (a zero-extent block) decode exactly.
  GaussianCloud same = RandomCloud(1, 0, 4);
  same.rotations = {1, 0, 0, 0};
  same.log_scales = {-2, -3, -4};
  GaussianCloud many = same.Gather(std::vector<uint32_t>(20, 0));
  auto out2 = DecodeGaussianBlock(EncodeGaussianBlock(many, 0, 20, kQ, 0));
  ASSERT_TRUE(out2.ok()) << out2.status();
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(out2->positions[i * 3], same.positions[0]);
    EXPECT_EQ(out2->log_scales[i * 3 + 2], -4.0f);
    EXPECT_EQ(out2->rotations[i * 4], 1.0f);
  }
}

TEST(ChunkCodecTest, EncodingIsDeterministic) {
  const GaussianCloud c = MortonSorted(RandomCloud(2500, 3, 9));
  for (ChunkEncoding enc : {kQ, kL}) {
    const std::string a = EncodeGaussianBlock(c, 100, 2400, enc, 3);
    std::string b, other_thread;
    b = EncodeGaussianBlock(c, 100, 2400, enc, 3);
    std::thread t([&] { other_thread = EncodeGaussianBlock(c, 100, 2400, enc, 3); });
    t.join();
    EXPECT_EQ(a, b);
    EXPECT_EQ(a, other_thread);
    // A copy of the data (different addresses) encodes the same.
    const GaussianCloud copy = c;
    EXPECT_EQ(a, EncodeGaussianBlock(copy, 100, 2400, enc, 3));
  }
  std::vector<float> patches(700 * kPatchStride);
  SplitMix64 rng(3);
  for (float& v : patches) v = static_cast<float>(rng.Normal());
  EXPECT_EQ(EncodePatchBlock(patches, kQ), EncodePatchBlock(patches, kQ));
}

TEST(ChunkCodecTest, PatchesRoundTrip) {
  const GaussianCloud c = MortonSorted(RandomCloud(1500, 0, 31));
  std::vector<float> patches(c.size() * kPatchStride);
  for (size_t i = 0; i < c.size(); ++i) {
    std::memcpy(&patches[i * kPatchStride], &c.positions[i * 3], 3 * sizeof(float));
    std::memcpy(&patches[i * kPatchStride + 3], &c.log_scales[i * 3], 3 * sizeof(float));
    std::memcpy(&patches[i * kPatchStride + 6], &c.rotations[i * 4], 4 * sizeof(float));
  }
  auto lossless = DecodePatchBlock(EncodePatchBlock(patches, kL));
  ASSERT_TRUE(lossless.ok()) << lossless.status();
  EXPECT_TRUE(BitEqual(*lossless, patches));

  const std::string q = EncodePatchBlock(patches, kQ);
  auto quantized = DecodePatchBlock(q);
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  ASSERT_EQ(quantized->size(), patches.size());
  for (float v : *quantized) ASSERT_TRUE(std::isfinite(v));
  const float* p = patches.data();
  const float* d = quantized->data();
  ExpectGeometryWithinBounds(p, p + 3, p + 6, kPatchStride, kPatchStride, kPatchStride, d, d + 3, d + 6, kPatchStride,
                             kPatchStride, kPatchStride, c.size());
  // Geometry only: far smaller than lossless.
  EXPECT_LT(q.size(), patches.size() * sizeof(float) / 3);

  auto info = ReadBlockInfo(q);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, ChunkKind::kPatches);
  EXPECT_EQ(info->encoding, kQ);
  EXPECT_EQ(info->count, c.size());
}

TEST(ChunkCodecTest, ReplacementsRoundTrip) {
  const GaussianCloud c = MortonSorted(RandomCloud(2000, 2, 41));
  std::vector<uint32_t> indices;
  SplitMix64 rng(42);
  uint32_t at = static_cast<uint32_t>(rng.Next() % 100000);
  for (int i = 0; i < 1500; ++i)
    indices.push_back(at += 1 + static_cast<uint32_t>(rng.Next() % (i % 7 == 0 ? 5000 : 3)));
  auto lossless = DecodeReplacementBlock(EncodeReplacementBlock(indices, c, 500, 2000, kL, 2));
  ASSERT_TRUE(lossless.ok()) << lossless.status();
  EXPECT_EQ(lossless->indices, indices);
  const GaussianCloud want = c.Gather([] {
    std::vector<uint32_t> r(1500);
    for (uint32_t i = 0; i < 1500; ++i) r[i] = 500 + i;
    return r;
  }());
  EXPECT_TRUE(BitEqual(lossless->gaussians.positions, want.positions));
  EXPECT_TRUE(BitEqual(lossless->gaussians.sh_rest, want.sh_rest));
  EXPECT_TRUE(BitEqual(lossless->gaussians.opacity_logits, want.opacity_logits));

  // Quantized: the indices exactly, the Gaussians as a Gaussian block of them decodes,
  // at a lower SH degree when asked; the indices cost little next to the Gaussians.
  const std::string q = EncodeReplacementBlock(indices, c, 500, 2000, kQ, 1);
  auto quantized = DecodeReplacementBlock(q);
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  EXPECT_EQ(quantized->indices, indices);
  auto as_block = DecodeGaussianBlock(EncodeGaussianBlock(c, 500, 2000, kQ, 1));
  ASSERT_TRUE(as_block.ok());
  EXPECT_TRUE(BitEqual(quantized->gaussians.positions, as_block->positions));
  EXPECT_TRUE(BitEqual(quantized->gaussians.sh_rest, as_block->sh_rest));
  EXPECT_EQ(quantized->gaussians.sh_degree, 1);
  EXPECT_LT(q.size(), EncodeGaussianBlock(c, 500, 2000, kQ, 1).size() + 2 * indices.size());
  auto info = ReadBlockInfo(q);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, ChunkKind::kReplacements);
  EXPECT_EQ(info->count, indices.size());
  EXPECT_EQ(info->sh_degree, 1);
  // Not a Gaussian or patch block, and the other decoders say so.
  EXPECT_EQ(DecodeGaussianBlock(q).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodePatchBlock(q).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeReplacementBlock(EncodeGaussianBlock(c, 0, 10, kQ, 1)).status().code(), absl::StatusCode::kDataLoss);
  // Indices that do not ascend, or do not match the range, are refused when encoding.
  std::vector<uint32_t> repeated = {1, 5, 5};
  EXPECT_EQ(EncodeReplacementBlock(repeated, c, 0, 3, kQ, 1), "");
  EXPECT_EQ(EncodeReplacementBlock(repeated, c, 0, 2, kQ, 1), "");
  // A block of more replacements than the decoder allows is refused before allocating.
  EXPECT_EQ(DecodeReplacementBlock(q, BlockLimits{.max_count = 1000}).status().code(), absl::StatusCode::kDataLoss);
}

TEST(ChunkCodecTest, ReplacementsPerBlockFitTheChunk) {
  const GaussianCloud c = RandomCloud(6000, 3, 43);
  for (size_t chunk : {size_t{4} << 10, size_t{64} << 10, size_t{256} << 10}) {
    for (int sh : {0, 3}) {
      for (ChunkEncoding enc : {kQ, kL}) {
        const size_t n = ReplacementsPerBlock(chunk, enc, sh);
        ASSERT_GT(n, 0u);
        ASSERT_LE(n, GaussiansPerBlock(chunk, enc, sh));
        const size_t m = std::min(n, c.size());
        std::vector<uint32_t> indices(m);
        for (size_t i = 0; i < m; ++i) indices[i] = static_cast<uint32_t>(i * 977 + (i * i) % 13);  // ascending
        const std::string block = EncodeReplacementBlock(indices, c, 0, indices.size(), enc, sh);
        EXPECT_LE(block.size(), chunk) << "chunk " << chunk << " SH " << sh;
      }
    }
  }
}

TEST(ChunkCodecTest, EmptyBlocks) {
  const GaussianCloud c = RandomCloud(10, 2, 1);
  for (ChunkEncoding enc : {kQ, kL}) {
    auto g = DecodeGaussianBlock(EncodeGaussianBlock(c, 4, 4, enc, 2));
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(g->size(), 0u);
    EXPECT_EQ(g->sh_degree, 2);
    auto p = DecodePatchBlock(EncodePatchBlock({}, enc));
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(p->empty());
  }
}

TEST(ChunkCodecTest, InvalidEncodeArgumentsGiveEmptyString) {
  const GaussianCloud c = RandomCloud(10, 1, 1);
  EXPECT_EQ(EncodeGaussianBlock(c, 5, 4, kQ, 1), "");
  EXPECT_EQ(EncodeGaussianBlock(c, 0, 11, kQ, 1), "");
  EXPECT_EQ(EncodeGaussianBlock(c, 0, 10, kQ, 2), "");
  EXPECT_EQ(EncodeGaussianBlock(c, 0, 10, kQ, -1), "");
  EXPECT_EQ(EncodeGaussianBlock(c, 0, 10, static_cast<ChunkEncoding>(7), 1), "");
  GaussianCloud broken = c;
  broken.sh_dc.pop_back();
  EXPECT_EQ(EncodeGaussianBlock(broken, 0, 5, kQ, 1), "");
  EXPECT_EQ(EncodePatchBlock(std::vector<float>(15), kQ), "");
}

TEST(ChunkCodecTest, WrongKindIsRejected) {
  const GaussianCloud c = RandomCloud(10, 0, 1);
  EXPECT_EQ(DecodePatchBlock(EncodeGaussianBlock(c, 0, 10, kQ, 0)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeGaussianBlock(EncodePatchBlock(std::vector<float>(20), kL)).status().code(),
            absl::StatusCode::kDataLoss);
}

// Blocks used by the robustness tests: both encodings, SH 0 and 3, and patches.
std::vector<std::string> SampleBlocks() {
  const GaussianCloud c = MortonSorted(RandomCloud(300, 3, 77));
  std::vector<float> patches(200 * kPatchStride);
  SplitMix64 rng(78);
  for (float& v : patches) v = static_cast<float>(rng.Normal());
  std::vector<uint32_t> indices(100);
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = static_cast<uint32_t>(3 * i + (i % 2));
  return {EncodeGaussianBlock(c, 0, 300, kQ, 3),
          EncodeGaussianBlock(c, 0, 300, kQ, 0),
          EncodeGaussianBlock(c, 0, 120, kL, 3),
          EncodePatchBlock(patches, kQ),
          EncodePatchBlock(patches, kL),
          EncodeReplacementBlock(indices, c, 10, 110, kQ, 2),
          EncodeReplacementBlock(indices, c, 0, 100, kL, 3)};
}

// Decodes `bytes` as whatever it claims to be; true when it decoded (and was valid).
bool DecodeAnyChecked(absl::string_view bytes, const BlockLimits& limits = {}) {
  auto g = DecodeGaussianBlock(bytes, limits);
  if (g.ok()) {
    EXPECT_TRUE(IsValidFinite(*g, ReadBlockInfo(bytes)->encoding == kQ));
    return true;
  }
  EXPECT_EQ(g.status().code(), absl::StatusCode::kDataLoss) << g.status();
  auto p = DecodePatchBlock(bytes, limits);
  if (p.ok()) {
    EXPECT_EQ(p->size() % kPatchStride, 0u);
    for (size_t i = 0; i < p->size(); ++i) EXPECT_TRUE(std::isfinite((*p)[i]));
    return true;
  }
  EXPECT_EQ(p.status().code(), absl::StatusCode::kDataLoss) << p.status();
  auto r = DecodeReplacementBlock(bytes, limits);
  if (r.ok()) {
    EXPECT_TRUE(IsValidFinite(r->gaussians, ReadBlockInfo(bytes)->encoding == kQ));
    EXPECT_EQ(r->indices.size(), r->gaussians.size());
    for (size_t i = 1; i < r->indices.size(); ++i) EXPECT_GT(r->indices[i], r->indices[i - 1]);
    return true;
  }
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  return false;
}

TEST(ChunkCodecTest, EveryTruncatedPrefixIsRejected) {
  for (const std::string& block : SampleBlocks()) {
    ASSERT_TRUE(DecodeAnyChecked(block));
    for (size_t len = 0; len < block.size(); ++len) {
      ASSERT_FALSE(DecodeAnyChecked(absl::string_view(block.data(), len))) << "prefix of " << len << " bytes";
    }
    // Trailing garbage is rejected too.
    ASSERT_FALSE(DecodeAnyChecked(block + "x"));
  }
}

TEST(ChunkCodecTest, RandomCorruptionsNeverCrash) {
  SplitMix64 rng(2024);
  int decoded = 0, total = 0;
  for (const std::string& block : SampleBlocks()) {
    for (int trial = 0; trial < 600; ++trial, ++total) {
      std::string bad = block;
      const int edits = 1 + static_cast<int>(rng.Next() % 8);
      for (int e = 0; e < edits; ++e) {
        const size_t at = rng.Next() % bad.size();
        switch (rng.Next() % 4) {
          case 0:
            bad[at] = static_cast<char>(rng.Next());
            break;  // random byte
          case 1:
            bad[at] = static_cast<char>(bad[at] ^ (1 << (rng.Next() % 8)));
            break;  // bit flip
          case 2:
            bad.erase(at, 1 + rng.Next() % 4);
            break;  // deletion
          default:
            bad.insert(at, 1, static_cast<char>(rng.Next()));
            break;  // insertion
        }
        if (bad.empty()) bad = "F";
      }
      decoded += DecodeAnyChecked(bad);
    }
  }
  std::cout << decoded << " of " << total << " corrupted blocks still decoded (all valid)\n";
}

// Rewrites a block's zstd frame around a modified payload, with a valid checksum,
// so the decoder's own checks (not zstd's) are what must catch the damage.
std::string WithPayload(const std::string& block, size_t header, const std::string& payload) {
  std::string frame(ZSTD_compressBound(payload.size()), '\0');
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  frame.resize(ZSTD_compress2(cctx, frame.data(), frame.size(), payload.data(), payload.size()));
  ZSTD_freeCCtx(cctx);
  return block.substr(0, header) + frame;
}

std::string Payload(const std::string& block, size_t header) {
  const std::string frame = block.substr(header);
  std::string payload(ZSTD_getFrameContentSize(frame.data(), frame.size()), '\0');
  EXPECT_EQ(ZSTD_decompress(payload.data(), payload.size(), frame.data(), frame.size()), payload.size());
  return payload;
}

// Header sizes of the sample blocks (see the layout in core/stream/chunk_codec.h).
constexpr size_t kHeaderQuantizedSh3 = 12 + 4 * (18 + 3) + 45;
constexpr size_t kHeaderQuantizedSh0 = 12 + 4 * 18;
constexpr size_t kHeaderPatches = 12 + 4 * 12;

TEST(ChunkCodecTest, HostilePayloadsWithValidChecksumsDecodeToValidClouds) {
  const std::vector<std::string> blocks = SampleBlocks();
  const std::pair<const std::string*, size_t> cases[] = {{&blocks[0], kHeaderQuantizedSh3},
                                                         {&blocks[1], kHeaderQuantizedSh0},
                                                         {&blocks[2], 12},
                                                         {&blocks[3], kHeaderPatches},
                                                         {&blocks[4], 12}};
  SplitMix64 rng(99);
  for (const auto& [block, header] : cases) {
    const std::string payload = Payload(*block, header);
    ASSERT_TRUE(DecodeAnyChecked(WithPayload(*block, header, payload)));
    for (int trial = 0; trial < 300; ++trial) {
      std::string bad = payload;
      if (trial % 10 == 0) {
        for (char& ch : bad) ch = static_cast<char>(0xff);  // every code at its maximum
      } else {
        for (int e = 0; e < 1 + trial % 50; ++e) bad[rng.Next() % bad.size()] = static_cast<char>(rng.Next());
      }
      DecodeAnyChecked(WithPayload(*block, header, bad));
    }
    // A payload of the wrong length is rejected.
    EXPECT_FALSE(DecodeAnyChecked(WithPayload(*block, header, payload + "x")));
    EXPECT_FALSE(DecodeAnyChecked(WithPayload(*block, header, payload.substr(1))));
  }
}

void PutU32At(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void PutF32At(std::string& s, size_t at, float f) {
  uint32_t v;
  std::memcpy(&v, &f, 4);
  PutU32At(s, at, v);
}

TEST(ChunkCodecTest, HostileHeadersAreRejected) {
  const std::vector<std::string> blocks = SampleBlocks();
  const std::string& q3 = blocks[0];
  const auto rejected = [](const std::string& bytes) {
    auto g = DecodeGaussianBlock(bytes);
    return !g.ok() && g.status().code() == absl::StatusCode::kDataLoss;
  };
  ASSERT_FALSE(rejected(q3));
  std::string s;
  // Counts far beyond the limits, or merely inconsistent with the frame.
  for (uint32_t count : {0x80000000u, 0xffffffffu, (1u << 20) + 1, 301u, 299u, 0u}) {
    for (const std::string* b : {&blocks[0], &blocks[2]}) {
      s = *b;
      PutU32At(s, 8, count);
      EXPECT_TRUE(rejected(s)) << count;
    }
  }
  // With the count limit lifted, the decompressed-size cap still stops 2^31 items
  // before anything is allocated for them.
  for (const std::string* b : {&blocks[0], &blocks[2], &blocks[3]}) {
    s = *b;
    PutU32At(s, 8, 0x80000000u);
    auto g = DecodeGaussianBlock(s, {.max_count = size_t{1} << 32});
    auto p = DecodePatchBlock(s, {.max_count = size_t{1} << 32});
    EXPECT_FALSE(g.ok());
    EXPECT_FALSE(p.ok());
    EXPECT_THAT(std::string(g.ok()            ? ""
                            : b == &blocks[3] ? p.status().message()
                                              : g.status().message()),
                ::testing::HasSubstr("exceeds the limit"));
  }
  // A small decompression budget is enforced before decompressing.
  EXPECT_FALSE(DecodeGaussianBlock(q3, {.max_count = 1 << 20, .max_decompressed_bytes = 1000}).ok());
  EXPECT_FALSE(DecodeGaussianBlock(q3, {.max_count = 299, .max_decompressed_bytes = 1 << 30}).ok());
  // Version, encoding, kind, SH degree, magic.
  for (auto [at, value] : std::initializer_list<std::pair<size_t, uint8_t>>{
           {4, 0}, {4, 2}, {4, 255}, {5, 0}, {5, 3}, {5, 255}, {6, 0}, {6, 3}, {7, 4}, {7, 200}, {0, 'X'}, {3, 0}}) {
    s = q3;
    s[at] = static_cast<char>(value);
    EXPECT_TRUE(rejected(s)) << "byte " << at << " = " << int(value);
  }
  s = blocks[3];
  s[7] = 1;  // patches carry no SH
  EXPECT_FALSE(DecodePatchBlock(s).ok());
  // Absurd ranges: NaN, infinite, inverted, beyond 1e30.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (size_t field = 0; field < 21; ++field) {  // every range float of an SH 3 block
    for (float v : {nan, inf, -inf, 3e38f, -3e38f}) {
      s = q3;
      PutF32At(s, 12 + 4 * field, v);
      EXPECT_TRUE(rejected(s)) << "range float " << field << " = " << v;
    }
  }
  s = q3;  // lo > hi for position x
  PutF32At(s, 12, 1.0f);
  PutF32At(s, 12 + 12, -1.0f);
  EXPECT_TRUE(rejected(s));
  s = q3;  // negative SH step
  PutF32At(s, 12 + 4 * 18, -0.5f);
  EXPECT_TRUE(rejected(s));
  // Packing widths other than 0, 1, 2, 4, 8.
  for (uint8_t w : {3, 5, 7, 9, 255}) {
    s = q3;
    s[12 + 4 * 21] = static_cast<char>(w);
    EXPECT_TRUE(rejected(s)) << int(w);
  }
  // A header cut inside the ranges.
  EXPECT_TRUE(rejected(q3.substr(0, 40)));
}

TEST(ChunkCodecTest, GaussiansPerBlockFitsTheChunk) {
  // Incompressible data: random bits (finite) for lossless, full-entropy codes for quantized.
  SplitMix64 rng(5);
  GaussianCloud noise = RandomCloud(1, 3, 1);
  noise.Resize(300000);
  for (std::vector<float>* v :
       {&noise.positions, &noise.log_scales, &noise.rotations, &noise.opacity_logits, &noise.sh_dc, &noise.sh_rest}) {
    for (float& x : *v) {
      uint32_t bits = static_cast<uint32_t>(rng.Next()) & 0xbfffffffu;  // exponent < 128: finite
      std::memcpy(&x, &bits, 4);
    }
  }
  for (float& x : noise.sh_rest) x = static_cast<float>(rng.Uniform(-7, 7));  // every SH code width 8
  for (float& x : noise.positions) x = static_cast<float>(rng.Uniform(-1, 1));
  for (size_t chunk : {size_t{64} << 10, size_t{256} << 10, size_t{1} << 20}) {
    for (ChunkEncoding enc : {kQ, kL}) {
      for (int sh : {0, 1, 3}) {
        const size_t n = GaussiansPerBlock(chunk, enc, sh);
        ASSERT_GT(n, 0u);
        ASSERT_LE(n, noise.size());
        const std::string b = EncodeGaussianBlock(noise, 0, n, enc, sh);
        EXPECT_LE(b.size(), chunk) << "chunk " << chunk << " enc " << int(enc) << " sh " << sh << " n " << n;
        // Not needlessly conservative: the uncompressed payload alone nearly fills it.
        EXPECT_GT(GaussiansPerBlock(chunk, enc, sh) *
                      (enc == kL ? 4 * (14 + 3 * ShRestCoeffs(sh)) : 16 + 3 * ShRestCoeffs(sh)),
                  chunk * 95 / 100);
      }
      const size_t np = PatchesPerBlock(chunk, enc);
      std::vector<float> patches(np * kPatchStride);
      for (float& v : patches) v = static_cast<float>(rng.Uniform(-1, 1));
      EXPECT_LE(EncodePatchBlock(patches, enc).size(), chunk);
    }
  }
  EXPECT_EQ(GaussiansPerBlock(10, kQ, 0), 0u);
  EXPECT_EQ(GaussiansPerBlock(200, kL, 3), 0u);
  EXPECT_LE(GaussiansPerBlock(size_t{1} << 40, kQ, 0), BlockLimits{}.max_count);
}

TEST(ChunkCodecTest, GaussiansPerBlockFitsTheChunkOnRealData) {
  FLEXGS_REQUIRE_DATA(path, "sh3-9k.ply");
  auto cloud = ReadGaussianPly(path);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  for (ChunkEncoding enc : {kQ, kL}) {
    const size_t n = std::min(cloud->size(), GaussiansPerBlock(64 << 10, enc, 3));
    EXPECT_LE(EncodeGaussianBlock(*cloud, 0, n, enc, 3).size(), size_t{64} << 10);
  }
}

// ---------------------------------------------------------------------------
// Quality and size on the shared scenes: blocks of 4096 in Morton order, 4 orbit
// views at 256x256.

struct QualityResult {
  double bytes_per_gaussian = 0;
  double psnr = 0;        // over all views
  double worst_view = 0;  // lowest single-view PSNR
};

QualityResult MeasureQuality(const GaussianCloud& original, int sh) {
  const GaussianCloud sorted = MortonSorted(original);
  const Encoded enc = EncodeInBlocks(sorted, 4096, kQ, sh);
  const GaussianCloud decoded = DecodeAll(enc);
  EXPECT_EQ(decoded.size(), sorted.size());
  EXPECT_TRUE(IsValidFinite(decoded));
  OrbitOptions orbit;
  orbit.count = 4;
  orbit.width = orbit.height = 256;
  auto cams = MakeOrbitCameras(sorted, orbit);
  EXPECT_TRUE(cams.ok());
  CpuRasterizer raster;
  QualityResult r;
  r.worst_view = std::numeric_limits<double>::infinity();
  double mse = 0;
  for (const Camera& cam : *cams) {
    auto a = raster.Render(sorted, cam, {});
    auto b = raster.Render(decoded, cam, {});
    EXPECT_TRUE(a.ok() && b.ok());
    const double p = *Psnr(a->color, b->color);
    r.worst_view = std::min(r.worst_view, p);
    mse += std::pow(10.0, -p / 10.0) / cams->size();
  }
  r.psnr = PsnrFromMse(mse);
  r.bytes_per_gaussian = static_cast<double>(enc.bytes) / sorted.size();
  return r;
}

TEST(ChunkCodecTest, GuitarQualityAndSize) {
  FLEXGS_REQUIRE_DATA(path, "guitar.ply");
  auto cloud = ReadGaussianPly(path);  // sanitised: the 667 infinite opacities become +-20
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  const QualityResult r = MeasureQuality(*cloud, 0);
  std::cout << "guitar SH0: " << r.bytes_per_gaussian << " B/Gaussian, PSNR " << r.psnr << " dB (worst view "
            << r.worst_view << ")\n";
  EXPECT_LE(r.bytes_per_gaussian, 12.0);  // SOG 13.17, SPZ 15.49
  EXPECT_GE(r.psnr, 40.0);
  EXPECT_GE(r.worst_view, 40.0);
}

TEST(ChunkCodecTest, Sh3QualityAndSize) {
  FLEXGS_REQUIRE_DATA(path, "sh3-9k.ply");
  auto cloud = ReadGaussianPly(path);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  ASSERT_EQ(cloud->sh_degree, 3);
  const QualityResult r = MeasureQuality(*cloud, 3);
  std::cout << "sh3-9k SH3: " << r.bytes_per_gaussian << " B/Gaussian, PSNR " << r.psnr << " dB (worst view "
            << r.worst_view << ")\n";
  EXPECT_LE(r.bytes_per_gaussian, 18.0);  // SPZ 20.55
  EXPECT_GE(r.psnr, 40.0);
  EXPECT_GE(r.worst_view, 40.0);
}

TEST(ChunkCodecTest, LosslessRoundTripOnRealData) {
  FLEXGS_REQUIRE_DATA(path, "sh3-9k.ply");
  auto cloud = ReadGaussianPly(path);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  const Encoded enc = EncodeInBlocks(*cloud, 4096, kL, 3);
  ExpectBitEqual(DecodeAll(enc), *cloud);
  EXPECT_LT(enc.bytes, cloud->ByteSize());
}

}  // namespace
}  // namespace flexgs
