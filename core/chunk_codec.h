// Chunk codec: self-contained binary blocks of Gaussians (or geometry patches) for
// streaming, each decodable on its own as it arrives.
//
// Block = 12-byte header + (quantized only) float32 ranges + exactly one zstd frame:
//   0  "FGSC"  magic
//   4  u8      version (1)
//   5  u8      encoding (ChunkEncoding)
//   6  u8      kind: 1 Gaussians, 2 patches
//   7  u8      SH degree (0..3; 0 for patches)
//   8  u32     count (Gaussians or patches), little endian
//   12 f32[]   quantized only, little endian: position lo[3] hi[3], log-scale lo[3]
//              hi[3], then for Gaussians SH DC lo[3] hi[3] and one max-|v| per SH
//              rest coefficient (3K, channel-major like GaussianCloud::sh_rest)
//   .. zstd frame whose content size is fixed by (encoding, kind, count, SH degree)
// The frame's content is a concatenation of byte planes, one per attribute
// component (and per byte of multi-byte values), so that zstd sees runs of
// similarly distributed bytes.
//
// Quantized encoding (bit depths chosen by measurement on guitar.ply and sh3-9k.ply,
// 4096-Gaussian Morton-ordered blocks, 4 orbit views at 256x256 against the
// unquantized render; see tests/chunk_codec_test.cc and bench/bench_codec.cc):
//   position    16 bits/axis in the block's bounds, delta-coded along the send
//               (Morton) order, zigzag, high/low byte planes. The floor.
//   log-scale   8 bits/axis in the block's per-axis range.
//   rotation    smallest-three: 2-bit index byte plane + 3 x 8 bits (255 levels,
//               zero exact) in [-1/sqrt2, 1/sqrt2]. Decoded unit, w >= 0.
//   opacity     8 bits in sigmoid space (logit of 0 and 1 decode to -+20).
//   SH DC       8 bits per channel in the block's per-channel range.
//   SH rest     signed, symmetric about an exact zero, in the block's per-coefficient
//               max |v|: 5 bits (+-15) band 1, 4 bits (+-7) bands 2 and 3.
// Measured impact: see the table in the .cc file.
//
// Lossless encoding: every float32 byte-shuffled into planes, then zstd; decodes
// bit-for-bit (non-finite inputs are replaced by finite values when encoding).
//
// Decoding is hardened for hostile input: every size is checked before anything is
// allocated, counts and decompressed sizes are capped by BlockLimits, ranges must be
// finite and ordered, and every decoded value is finite. Errors are DataLoss.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/gaussian_cloud.h"

namespace flexgs {

enum class ChunkEncoding : uint8_t { kQuantized = 1, kLossless = 2 };

enum class ChunkKind : uint8_t { kGaussians = 1, kPatches = 2 };

// Caps a decoder enforces before allocating, so a hostile header cannot make it
// allocate without bound.
struct BlockLimits {
  size_t max_count = size_t{1} << 20;                    // Gaussians or patches per block
  size_t max_decompressed_bytes = size_t{256} << 20;     // zstd frame content size
};

// What a block's header says (validated, nothing decompressed).
struct BlockInfo {
  ChunkEncoding encoding = ChunkEncoding::kQuantized;
  ChunkKind kind = ChunkKind::kGaussians;
  int sh_degree = 0;
  uint32_t count = 0;
};

// Encodes Gaussians [begin, end) of `cloud` at SH degree `sh_degree` (<=
// cloud.sh_degree; higher bands are dropped). Deterministic bytes. Send the
// Gaussians in spatial (e.g. Morton) order: quantized positions are relative to the
// block's bounds and delta-coded. Returns "" (and logs an error) on invalid
// arguments: an invalid cloud, a bad range, sh_degree outside 0..cloud.sh_degree.
std::string EncodeGaussianBlock(const GaussianCloud& cloud, size_t begin, size_t end, ChunkEncoding enc,
                                int sh_degree);

absl::StatusOr<GaussianCloud> DecodeGaussianBlock(absl::string_view bytes, const BlockLimits& limits = {});

// Patches: kPatchStride (10) floats each -- position(3), log_scale(3), rotation(4)
// -- quantized like Gaussians. Returns "" (and logs an error) when the size is not a
// multiple of 10.
std::string EncodePatchBlock(absl::Span<const float> patches, ChunkEncoding enc);

absl::StatusOr<std::vector<float>> DecodePatchBlock(absl::string_view bytes, const BlockLimits& limits = {});

// Parses and validates a block's header only (for dispatching on kind).
absl::StatusOr<BlockInfo> ReadBlockInfo(absl::string_view bytes);

// The most Gaussians (patches) whose encoded block is guaranteed to fit in
// `max_chunk_bytes`, whatever the data (from the uncompressed payload size plus
// zstd's worst-case expansion), capped at BlockLimits{}.max_count. 0 when not even
// one fits.
size_t GaussiansPerBlock(size_t max_chunk_bytes, ChunkEncoding enc, int sh_degree);
size_t PatchesPerBlock(size_t max_chunk_bytes, ChunkEncoding enc);

}  // namespace flexgs
