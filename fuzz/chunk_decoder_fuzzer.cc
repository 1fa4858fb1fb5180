// Fuzz target: the streaming chunk decoder (core/stream/chunk_codec.h) -- the bytes a
// client receives from the network. Dispatches on ReadBlockInfo's kind.
//
// Invariants of an accepted block:
//   - exactly the header's count of items (and its SH degree), every value finite;
//     quantized rotations are unit quaternions with w >= 0 and opacity logits lie
//     in [-20, 20], as the header promises;
//   - the decoded values re-encoded losslessly decode to the same bits;
//   - re-encoded quantized they decode again, with the same opacities (the 7-bit
//     sigmoid codes are a fixed point) and positions within half a quantization
//     step of the new block's range.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "stream/chunk_codec.h"
#include "stream/level_planner.h"

namespace flexgs::fuzz {
namespace {

// Tighter than the production limits so that a tiny zstd frame cannot make one run
// allocate and fill hundreds of MiB; the limits themselves are tested in chunk_codec_test.
BlockLimits FuzzLimits() {
  BlockLimits limits;
  limits.max_count = size_t{1} << 14;
  limits.max_decompressed_bytes = size_t{4} << 20;
  return limits;
}

absl::string_view AbslView(const std::string& s) { return absl::string_view(s.data(), s.size()); }

// Unit length with w >= 0, for `count` quaternions at `q` with `stride` floats apart.
void CheckUnitQuaternions(const float* q, size_t count, size_t stride) {
  for (size_t i = 0; i < count; ++i, q += stride) {
    const double norm =
        std::sqrt(double{q[0]} * q[0] + double{q[1]} * q[1] + double{q[2]} * q[2] + double{q[3]} * q[3]);
    FUZZ_CHECK(std::abs(norm - 1.0) < 1e-5);
    FUZZ_CHECK(q[0] >= 0.0f);
  }
}

// The quantized encoding clamps values to +-1e30 (kMaxMagnitude in chunk_codec.cc)
// so that every dequantized value stays finite.
double Clamped(float v) { return std::clamp<double>(v, -1e30f, 1e30f); }

// Positions of `b` within half a 16-bit step of (clamped) `a`, per axis, in `a`'s range.
void CheckPositionsQuantized(const float* a, const float* b, size_t count, size_t stride) {
  for (int d = 0; d < 3; ++d) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (size_t i = 0; i < count; ++i) {
      lo = std::min(lo, Clamped(a[i * stride + d]));
      hi = std::max(hi, Clamped(a[i * stride + d]));
    }
    const double half_step = 0.5 * (hi - lo) / ((1 << kChunkPositionBits) - 1);
    // Plus float rounding of the dequantized value.
    const double slack = 4 * std::numeric_limits<float>::epsilon() * std::max(std::abs(lo), std::abs(hi));
    for (size_t i = 0; i < count; ++i) {
      FUZZ_CHECK(std::abs(b[i * stride + d] - Clamped(a[i * stride + d])) <= half_step * (1 + 1e-9) + slack);
    }
  }
}

void CheckGaussians(absl::string_view bytes, const BlockInfo& info) {
  absl::StatusOr<GaussianCloud> cloud = DecodeGaussianBlock(bytes, FuzzLimits());
  if (!cloud.ok()) return;
  FUZZ_CHECK(cloud->Validate().ok());
  FUZZ_CHECK(cloud->size() == info.count);
  FUZZ_CHECK(cloud->sh_degree == info.sh_degree);
  FUZZ_CHECK(AllFinite(*cloud));
  const size_t n = cloud->size();
  if (info.encoding == ChunkEncoding::kQuantized) {
    CheckUnitQuaternions(cloud->rotations.data(), n, 4);
    for (float o : cloud->opacity_logits) FUZZ_CHECK(o >= -kOpacityLogitLimit && o <= kOpacityLogitLimit);
  }

  const std::string lossless = EncodeGaussianBlock(*cloud, 0, n, ChunkEncoding::kLossless, cloud->sh_degree);
  FUZZ_CHECK(!lossless.empty());
  absl::StatusOr<GaussianCloud> exact = DecodeGaussianBlock(AbslView(lossless), FuzzLimits());
  FUZZ_CHECK(exact.ok());
  FUZZ_CHECK(SameBits(*exact, *cloud));

  const std::string quantized = EncodeGaussianBlock(*cloud, 0, n, ChunkEncoding::kQuantized, cloud->sh_degree);
  FUZZ_CHECK(!quantized.empty());
  absl::StatusOr<GaussianCloud> again = DecodeGaussianBlock(AbslView(quantized), FuzzLimits());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->size() == n && again->sh_degree == cloud->sh_degree);
  FUZZ_CHECK(AllFinite(*again));
  CheckPositionsQuantized(cloud->positions.data(), again->positions.data(), n, 3);
  if (info.encoding == ChunkEncoding::kQuantized) FUZZ_CHECK(SameBits(again->opacity_logits, cloud->opacity_logits));
}

void CheckPatches(absl::string_view bytes, const BlockInfo& info) {
  absl::StatusOr<std::vector<float>> patches = DecodePatchBlock(bytes, FuzzLimits());
  if (!patches.ok()) return;
  const size_t n = info.count;
  FUZZ_CHECK(patches->size() == n * kPatchStride);
  FUZZ_CHECK(AllFinite(*patches));
  if (info.encoding == ChunkEncoding::kQuantized && n > 0) CheckUnitQuaternions(patches->data() + 6, n, kPatchStride);

  const std::string lossless = EncodePatchBlock(*patches, ChunkEncoding::kLossless);
  FUZZ_CHECK(!lossless.empty());
  absl::StatusOr<std::vector<float>> exact = DecodePatchBlock(AbslView(lossless), FuzzLimits());
  FUZZ_CHECK(exact.ok());
  FUZZ_CHECK(SameBits(*exact, *patches));

  const std::string quantized = EncodePatchBlock(*patches, ChunkEncoding::kQuantized);
  FUZZ_CHECK(!quantized.empty());
  absl::StatusOr<std::vector<float>> again = DecodePatchBlock(AbslView(quantized), FuzzLimits());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->size() == patches->size());
  FUZZ_CHECK(AllFinite(*again));
  CheckPositionsQuantized(patches->data(), again->data(), n, kPatchStride);
}

// Replacements: strictly ascending indices, one per Gaussian, the Gaussians as valid
// as a Gaussian block's, and a lossless re-encoding that decodes to the same bits.
void CheckReplacements(absl::string_view bytes, const BlockInfo& info) {
  absl::StatusOr<ReplacementBlock> block = DecodeReplacementBlock(bytes, FuzzLimits());
  if (!block.ok()) return;
  const size_t n = info.count;
  FUZZ_CHECK(block->indices.size() == n && block->gaussians.size() == n);
  FUZZ_CHECK(block->gaussians.sh_degree == info.sh_degree);
  FUZZ_CHECK(block->gaussians.Validate().ok());
  FUZZ_CHECK(AllFinite(block->gaussians));
  for (size_t i = 1; i < n; ++i) FUZZ_CHECK(block->indices[i] > block->indices[i - 1]);
  const std::string lossless =
      EncodeReplacementBlock(block->indices, block->gaussians, 0, n, ChunkEncoding::kLossless, info.sh_degree);
  FUZZ_CHECK(!lossless.empty());
  absl::StatusOr<ReplacementBlock> exact = DecodeReplacementBlock(AbslView(lossless), FuzzLimits());
  FUZZ_CHECK(exact.ok());
  FUZZ_CHECK(exact->indices == block->indices);
  FUZZ_CHECK(SameBits(exact->gaussians, block->gaussians));
}

}  // namespace
}  // namespace flexgs::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  flexgs::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flexgs;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<BlockInfo> info = ReadBlockInfo(bytes);
  if (!info.ok()) return 0;
  // Each kind decodes only as itself: the others must refuse it, not misread it.
  const bool as_gaussians = DecodeGaussianBlock(bytes, fuzz::FuzzLimits()).ok();
  const bool as_patches = DecodePatchBlock(bytes, fuzz::FuzzLimits()).ok();
  const bool as_replacements = DecodeReplacementBlock(bytes, fuzz::FuzzLimits()).ok();
  switch (info->kind) {
    case ChunkKind::kGaussians:
      fuzz::CheckGaussians(bytes, *info);
      FUZZ_CHECK(!as_patches && !as_replacements);
      break;
    case ChunkKind::kPatches:
      fuzz::CheckPatches(bytes, *info);
      FUZZ_CHECK(!as_gaussians && !as_replacements);
      break;
    case ChunkKind::kReplacements:
      fuzz::CheckReplacements(bytes, *info);
      FUZZ_CHECK(!as_gaussians && !as_patches);
      break;
  }
  return 0;
}
