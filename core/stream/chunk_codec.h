// Chunk codec: self-contained binary blocks of Gaussians (or geometry patches) for
// streaming; each block carries its own bounds and decodes on its own as it arrives.
//
// Block layout (little endian):
//   0  "FGSC"   magic
//   4  u8       version (1)
//   5  u8       encoding (ChunkEncoding)
//   6  u8       kind (ChunkKind)
//   7  u8       SH degree (0..3; 0 for patches)
//   8  u32      count (Gaussians or patches)
//   quantized only:
//   12 f32[12]  position lo[3] hi[3], log-scale lo[3] hi[3] (of the axis-sorted scales)
//      Gaussians: f32[6] SH DC lo[3] hi[3]; f32[deg] SH rest step per band;
//                 u8[3K] packing width of each SH rest plane (0, 1, 2, 4 or 8)
//   .. exactly one zstd frame (with checksum) to the end of the block. Its content
//      size is implied by the header; its content is byte planes, one per attribute
//      component (two for 16-bit values), and zstd blocks are cut after every plane
//      but the SH rest ones (which share statistics) so each plane gets its own
//      entropy tables: 1.3 B/G smaller on guitar than one undivided stream.
//
// Quantized encoding. Bit depths were chosen by measurement: 4096-Gaussian blocks in
// Morton order, 4 orbit views rendered with CpuRasterizer, PSNR of decoded against
// unquantized render at 256x256 (1024x1024 in brackets), zstd level 1:
//
//   scene (SH)       B/G    PSNR all        only scale+rot  only opacity  only DC  only SH rest
//   guitar (0)       11.48  57.1 (55.7) dB  65.3            69.8          58.1     -
//   sh3-9k (3)       16.45  45.8 (45.8) dB  50.8            56.0          55.8     48.4
//   synthetic (3)    12.34  52.1 (51.9) dB  72.6            73.5          55.7     54.7
// (positions alone: 81-87 dB.) Same measure for the production formats, written by
// splat-transform 2.7.1: guitar SOG 13.17 B/G at 61.6 dB, SPZ 15.49 at 65.0;
// sh3-9k SPZ 20.55 B/G at 40.8 dB, SOG 47.9 at 49.9.
//
//   position   16 bits/axis in the block's bounds (the floor; 81 dB alone),
//              delta-coded along the send order, zigzag, high/low byte planes.
//   log-scale  6 bits/axis in the block's per-axis range. The encoder sorts each
//              Gaussian's axes by decreasing scale (permuting the rotation to match),
//              so each axis range is tighter. 8 -> 6 bits: -0.75 B/G on guitar;
//              each bit less costs sh3-9k ~4.5 dB on scale+rotation alone.
//   rotation   smallest-three, 3 x 7 bits (127 levels, zero exact) in [-1/sqrt2,
//              1/sqrt2]. Of the equivalent quaternions q, q*i, q*j, q*k (180-degree
//              turns about body axes leave a Gaussian unchanged) the encoder keeps the
//              one with the largest |w|, so w is always the dropped component and no
//              index is sent. 6 bits: -0.39 B/G, but sh3-9k 45.8 -> 45.0 dB.
//   opacity    7 bits in sigmoid space; codes 0 and 127 decode to logits -+20.
//              6 bits costs sh3-9k 7 dB (opacity alone 56.0 -> 48.6 dB).
//   SH DC      5 bits per channel in the block's per-channel range; codes sent as G,
//              R-G, B-G (mod 32), which zstd codes 0.14 B/G smaller. 6 bits would
//              lift guitar to ~61 dB for +0.37 B/G, too close to the 12 B/G target.
//   SH rest    uniform step kChunkShRestStep (0.06; raised per band and block only if
//              a value would exceed 127 steps), exact zero, codes zigzagged and packed
//              at the plane's smallest width in {0,1,2,4,8} bits so that mostly-zero
//              planes are not held at Huffman's 1-bit floor (-1.3 B/G on sh3-9k).
//              0.06 matches SPZ's band-1 step; SPZ's coarser 0.125 for bands 2-3 costs
//              sh3-9k ~7 dB, a step of 0.05 buys +1 dB for +1 B/G.
// Where guitar's bytes go (entropy of the codes, B/G): position 4.6, log-scale 1.9,
// rotation 2.5, opacity 0.8, DC 1.3.
//
// Decoded quaternions are unit with w >= 0, and every decoded value is finite.
// Because axes are sorted and quaternions canonicalised, a decoded Gaussian equals
// the input as a shape (covariance), not attribute by attribute.
//
// Lossless encoding: every float32 byte-shuffled into 4 planes per component, then
// zstd; decodes bit for bit. Non-finite inputs are replaced when encoding (NaN -> 0,
// +-inf -> +-FLT_MAX, opacity +-inf -> +-20) since the decoder rejects them.
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
#include "scene/gaussian_cloud.h"

namespace flexgs {

enum class ChunkEncoding : uint8_t { kQuantized = 1, kLossless = 2 };

enum class ChunkKind : uint8_t { kGaussians = 1, kPatches = 2, kReplacements = 3 };

// Quantizer parameters of the quantized encoding (version 1), for error bounds.
inline constexpr int kChunkPositionBits = 16;
inline constexpr int kChunkScaleBits = 6;
inline constexpr int kChunkRotationBits = 7;
inline constexpr int kChunkOpacityBits = 7;
inline constexpr int kChunkDcBits = 5;
inline constexpr float kChunkShRestStep = 0.06f;
inline constexpr int kChunkShRestMaxCode = 127;

// Caps a decoder enforces before allocating, so a hostile header cannot make it
// allocate without bound.
struct BlockLimits {
  size_t max_count = size_t{1} << 20;                 // Gaussians or patches per block
  size_t max_decompressed_bytes = size_t{256} << 20;  // zstd frame content size
};

// What a block's header says (validated, nothing decompressed).
struct BlockInfo {
  ChunkEncoding encoding = ChunkEncoding::kQuantized;
  ChunkKind kind = ChunkKind::kGaussians;
  int sh_degree = 0;
  uint32_t count = 0;
};

// Encodes Gaussians [begin, end) of `cloud` at SH degree `sh_degree` (<=
// cloud.sh_degree; higher bands are dropped). Deterministic bytes. Send Gaussians in
// spatial (e.g. Morton) order: quantized positions are relative to the block's bounds
// and delta-coded. Returns "" (and logs an error) on invalid arguments: a cloud that
// fails Validate(), a bad range, sh_degree outside 0..cloud.sh_degree.
std::string EncodeGaussianBlock(const GaussianCloud& cloud, size_t begin, size_t end, ChunkEncoding enc, int sh_degree);

absl::StatusOr<GaussianCloud> DecodeGaussianBlock(absl::string_view bytes, const BlockLimits& limits = {});

// Patches: kPatchStride (10) floats each -- position(3), log_scale(3), rotation(4) --
// quantized like Gaussians (so a decoded patch is also axis-sorted and canonical).
// Returns "" (and logs an error) when the size is not a multiple of 10.
std::string EncodePatchBlock(absl::Span<const float> patches, ChunkEncoding enc);

absl::StatusOr<std::vector<float>> DecodePatchBlock(absl::string_view bytes, const BlockLimits& limits = {});

// Replacements: whole Gaussians that overwrite held ones (merged levels), addressed by
// strictly ascending client-order indices. Layout after the fixed header (kind 3, the
// Gaussians' SH degree and count):
//   12 u32     F, the bytes of the index frame
//   16 F bytes one zstd frame: `count` u32 values, the first index then each gap - 1,
//              as four byte planes (gaps are small, so the high planes vanish)
//   .. a complete Gaussian block (same encoding, SH degree and count)
struct ReplacementBlock {
  std::vector<uint32_t> indices;
  GaussianCloud gaussians;
};

// Encodes Gaussians [begin, end) of `cloud` as replacements of `indices` (one per
// Gaussian, strictly ascending). Returns "" (and logs an error) on invalid arguments.
std::string EncodeReplacementBlock(absl::Span<const uint32_t> indices, const GaussianCloud& cloud, size_t begin,
                                   size_t end, ChunkEncoding enc, int sh_degree);

absl::StatusOr<ReplacementBlock> DecodeReplacementBlock(absl::string_view bytes, const BlockLimits& limits = {});

// Parses and validates a block's fixed header only (e.g. to dispatch on kind).
absl::StatusOr<BlockInfo> ReadBlockInfo(absl::string_view bytes);

// The most Gaussians (patches) whose encoded block is guaranteed to fit in
// `max_chunk_bytes` whatever the data (uncompressed payload plus zstd's worst-case
// expansion), capped at BlockLimits{}.max_count. 0 when not even one fits.
// Real quantized blocks come out 1.4x (SH 0) to 3.7x (SH 3) smaller than this bound;
// a sender wanting fuller chunks can encode more and split on overflow.
size_t GaussiansPerBlock(size_t max_chunk_bytes, ChunkEncoding enc, int sh_degree);
size_t PatchesPerBlock(size_t max_chunk_bytes, ChunkEncoding enc);
size_t ReplacementsPerBlock(size_t max_chunk_bytes, ChunkEncoding enc, int sh_degree);

}  // namespace flexgs
