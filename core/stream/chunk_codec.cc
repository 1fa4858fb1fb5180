#include "stream/chunk_codec.h"

#include <zstd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "base/byte_io.h"
#include "base/status_macros.h"
#include "spdlog/spdlog.h"
#include "stream/wire_layout.h"

namespace flexgs {
namespace {

constexpr char kMagic[4] = {'F', 'G', 'S', 'C'};
constexpr uint8_t kVersion = 1;
constexpr size_t kFixedHeaderBytes = 12;
// Level 1 gave the smallest quantized blocks on guitar (the planes are mostly
// literals; higher levels find matches that cost more than they save) and is the
// fastest; level 19 is 5% smaller on sh3-9k but 10x slower to encode.
constexpr int kZstdLevel = 1;
// Ranges (and the values clamped into them) stay within this, so that every
// dequantization lo + code * (hi - lo) / levels is finite.
constexpr float kMaxMagnitude = 1e30f;

// ---------------------------------------------------------------------------
// Quantized payload layout: one code array ("component") per attribute component.

int ShBand(size_t j) { return j < 3 ? 1 : j < 8 ? 2 : 3; }

struct Layout {
  // First component of each attribute (pos, scale, rot: 3; opacity: 1; dc: 3; rest: 3K).
  size_t pos = 0, scale = 3, rot = 6, opacity = 9, dc = 10, rest = 13;
  std::vector<int> bits;
  // Per component: -1 for byte planes (two when bits > 8); else the SH rest code is
  // zigzagged and packed at this many bits (0, 1, 2, 4 or 8).
  std::vector<int> width;
};

// `rest_widths`: packing width of each SH rest plane (null: 8, the worst case).
Layout MakeLayout(ChunkKind kind, int sh_degree, const std::vector<int>* rest_widths = nullptr) {
  Layout l;
  l.bits = {kChunkPositionBits, kChunkPositionBits, kChunkPositionBits, kChunkScaleBits,   kChunkScaleBits,
            kChunkScaleBits,    kChunkRotationBits, kChunkRotationBits, kChunkRotationBits};
  l.width.assign(l.bits.size(), -1);
  if (kind == ChunkKind::kPatches) return l;
  l.bits.insert(l.bits.end(), {kChunkOpacityBits, kChunkDcBits, kChunkDcBits, kChunkDcBits});
  l.width.resize(l.bits.size(), -1);
  const size_t rest = 3 * static_cast<size_t>(ShRestCoeffs(sh_degree));
  for (size_t c = 0; c < rest; ++c) {
    l.bits.push_back(8);
    l.width.push_back(rest_widths ? (*rest_widths)[c] : 8);
  }
  return l;
}

uint64_t ComponentBytes(const Layout& l, size_t c, uint64_t n) {
  if (l.width[c] >= 0) return (n * static_cast<uint64_t>(l.width[c]) + 7) / 8;
  return n * (l.bits[c] > 8 ? 2 : 1);
}

uint64_t QuantizedPayloadBytes(const Layout& l, uint64_t n) {
  uint64_t b = 0;
  for (size_t c = 0; c < l.bits.size(); ++c) b += ComponentBytes(l, c, n);
  return b;
}

// Floats of ranges in a quantized header.
size_t RangeFloats(ChunkKind kind, int sh_degree) { return kind == ChunkKind::kPatches ? 12 : 18 + sh_degree; }

// Bytes of SH rest packing widths in a quantized header.
size_t WidthBytes(ChunkKind kind, int sh_degree) {
  return kind == ChunkKind::kGaussians ? 3 * static_cast<size_t>(ShRestCoeffs(sh_degree)) : 0;
}

size_t FloatsPerItem(ChunkKind kind, int sh_degree) {
  return kind == ChunkKind::kPatches ? kPatchStride : 14 + 3 * static_cast<size_t>(ShRestCoeffs(sh_degree));
}

size_t HeaderBytes(ChunkEncoding enc, ChunkKind kind, int sh_degree) {
  if (enc == ChunkEncoding::kLossless) return kFixedHeaderBytes;
  return kFixedHeaderBytes + 4 * RangeFloats(kind, sh_degree) + WidthBytes(kind, sh_degree);
}

// Payload size; for quantized Gaussians the worst case (every SH plane at width 8).
uint64_t MaxPayloadBytes(ChunkEncoding enc, ChunkKind kind, int sh_degree, uint64_t count) {
  if (enc == ChunkEncoding::kLossless) return count * 4 * FloatsPerItem(kind, sh_degree);
  return QuantizedPayloadBytes(MakeLayout(kind, sh_degree), count);
}

using Codes = std::vector<std::vector<uint16_t>>;  // [component][item]

uint8_t ZigZag8(uint8_t v) {
  const auto d = static_cast<int8_t>(v);
  return static_cast<uint8_t>((static_cast<uint8_t>(d) << 1) ^ static_cast<uint8_t>(d >> 7));
}
uint8_t UnZigZag8(uint8_t z) { return static_cast<uint8_t>((z >> 1) ^ (0u - (z & 1u))); }
uint16_t ZigZag16(uint16_t v) {
  const auto d = static_cast<int16_t>(v);
  return static_cast<uint16_t>((static_cast<uint16_t>(d) << 1) ^ static_cast<uint16_t>(d >> 15));
}
uint16_t UnZigZag16(uint16_t z) { return static_cast<uint16_t>((z >> 1) ^ (0u - (z & 1u))); }

uint16_t Mask(int bits) { return static_cast<uint16_t>((1u << bits) - 1); }

// Smallest packing width (0, 1, 2, 4 or 8) holding every zigzagged byte code.
int PackWidth(const std::vector<uint16_t>& codes) {
  uint8_t max = 0;
  for (uint16_t v : codes) max = std::max(max, ZigZag8(static_cast<uint8_t>(v)));
  for (int w : {0, 1, 2, 4})
    if (max < (1u << w)) return w;
  return 8;
}

// Writes every component's planes into `payload` (QuantizedPayloadBytes(l, n) zero
// bytes); returns the offsets where zstd blocks are cut.
std::vector<size_t> WritePlanes(const Layout& l, const Codes& codes, size_t n, std::string& payload) {
  std::vector<size_t> ends;
  size_t off = 0;
  for (size_t c = 0; c < l.bits.size(); ++c) {
    const std::vector<uint16_t>& v = codes[c];
    if (const int w = l.width[c]; w >= 0) {
      for (size_t i = 0; w > 0 && i < n; ++i) {
        const size_t bit = i * static_cast<size_t>(w);  // w divides 8: no code straddles bytes
        auto& byte = reinterpret_cast<uint8_t&>(payload[off + bit / 8]);
        byte = static_cast<uint8_t>(byte | (ZigZag8(static_cast<uint8_t>(v[i])) << (bit % 8)));
      }
    } else {
      if (l.bits[c] > 8) {
        for (size_t i = 0; i < n; ++i) payload[off + i] = static_cast<char>(v[i] >> 8);
        off += n;
        ends.push_back(off);
      }
      for (size_t i = 0; i < n; ++i) payload[off + i] = static_cast<char>(v[i] & 0xff);
    }
    off += l.width[c] >= 0 ? ComponentBytes(l, c, n) : n;
    // The SH rest planes share their statistics and stay together: one region for
    // zstd is 0.4 B/G smaller on sh3-9k (2-3 B/G on blocks of a few hundred).
    if (l.width[c] < 0 || c + 1 == l.bits.size()) ends.push_back(off);
  }
  return ends;
}

// Inverse of WritePlanes; `payload` holds exactly QuantizedPayloadBytes(l, n) bytes.
// Codes are masked to their bit depth, so every later step sees in-range codes.
Codes ReadPlanes(const Layout& l, size_t n, const std::string& payload) {
  Codes codes(l.bits.size(), std::vector<uint16_t>(n));
  const auto* p = reinterpret_cast<const uint8_t*>(payload.data());
  size_t off = 0;
  for (size_t c = 0; c < l.bits.size(); ++c) {
    std::vector<uint16_t>& v = codes[c];
    if (const int w = l.width[c]; w >= 0) {
      for (size_t i = 0; w > 0 && i < n; ++i) {
        const size_t bit = i * static_cast<size_t>(w);
        v[i] = UnZigZag8(static_cast<uint8_t>((p[off + bit / 8] >> (bit % 8)) & Mask(w)));
      }
      off += ComponentBytes(l, c, n);
      continue;
    }
    if (l.bits[c] > 8) {
      for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint16_t>(p[off + i] << 8);
      off += n;
    }
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint16_t>((v[i] | p[off + i]) & Mask(l.bits[c]));
    off += n;
  }
  return codes;
}

// ---------------------------------------------------------------------------
// Scalar quantizers.

float ClampFinite(float v) { return std::isnan(v) ? 0.0f : std::clamp(v, -kMaxMagnitude, kMaxMagnitude); }

struct Range {
  float lo = 0, hi = 0;
};

// Range of the finite values (each clamped to +-kMaxMagnitude); {0, 0} if none.
Range ComputeRange(const std::vector<float>& values) {
  Range r{std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  for (float v : values) {
    if (!std::isfinite(v)) continue;
    r.lo = std::min(r.lo, ClampFinite(v));
    r.hi = std::max(r.hi, ClampFinite(v));
  }
  return r.lo <= r.hi ? r : Range{};
}

constexpr uint32_t Levels(int bits) { return (1u << bits) - 1; }

// Uniform code in [0, 2^bits - 1] of v in r; out-of-range values (and +-inf) clamp,
// NaN -> 0.
uint16_t QuantizeUnit(float v, Range r, int bits) {
  const uint32_t levels = Levels(bits);
  if (!(r.hi > r.lo)) return 0;
  const double t = (static_cast<double>(v) - r.lo) / (static_cast<double>(r.hi) - r.lo) * levels;
  if (!(t > 0)) return 0;
  if (t >= levels) return static_cast<uint16_t>(levels);
  return static_cast<uint16_t>(t + 0.5);
}

float DequantizeUnit(uint32_t code, Range r, int bits) {
  const uint32_t levels = Levels(bits);
  if (!(r.hi > r.lo)) return r.lo;
  const double v = r.lo + (static_cast<double>(r.hi) - r.lo) * std::min(code, levels) / levels;
  return std::clamp(static_cast<float>(v), r.lo, r.hi);
}

// SH rest: round(v / step) in [-127, 127] as a two's complement byte.
uint16_t QuantizeStep(float v, float step) {
  if (!(step > 0)) return 0;
  const double t = static_cast<double>(v) / step;
  if (std::isnan(t)) return 0;
  const double clamped = std::clamp<double>(t, -kChunkShRestMaxCode, kChunkShRestMaxCode);
  // Round half away from zero, so that the quantizer is symmetric about 0.
  const auto code = static_cast<int32_t>(clamped >= 0 ? clamped + 0.5 : clamped - 0.5);
  return static_cast<uint16_t>(static_cast<uint32_t>(code) & 0xff);
}

float DequantizeStep(uint16_t stored, float step) {
  const int32_t code = std::max<int32_t>(static_cast<int8_t>(static_cast<uint8_t>(stored)), -kChunkShRestMaxCode);
  return static_cast<float>(static_cast<double>(code) * step);
}

// ---------------------------------------------------------------------------
// Rotations.
//
// A Gaussian is unchanged by permuting its body axes together with their scales and
// by 180-degree turns about a body axis. The encoder uses both freedoms: axes are
// sorted by decreasing log-scale, and of the four equivalent quaternions q, q*i, q*j,
// q*k the one whose |w| is largest is kept, with w > 0. Smallest-three then always
// drops w: x, y, z lie in [-1/sqrt2, 1/sqrt2] and are coded with an odd number of
// levels so that 0 is exact.

constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kHalfSqrt2 = 0.7071067811865476;

using Quat = std::array<double, 4>;  // w, x, y, z

Quat Multiply(const Quat& a, const Quat& b) {
  return {a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3], a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
          a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1], a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0]};
}

// Unit quaternion of a raw (not necessarily unit) rotation; identity when degenerate.
Quat Normalized(const float* q_in) {
  Quat q{q_in[0], q_in[1], q_in[2], q_in[3]};
  double norm2 = 0;
  for (double v : q) norm2 += v * v;
  if (!(norm2 > 0) || !std::isfinite(norm2)) return {1, 0, 0, 0};
  const double inv = 1.0 / std::sqrt(norm2);
  for (double& v : q) v *= inv;
  return q;
}

// Proper rotations M permuting body axes: column j of R*M is +-column perm[j] of R.
struct AxisPermutation {
  int perm[3];
  Quat m;
};
constexpr AxisPermutation kAxisPermutations[6] = {
    {{0, 1, 2}, {1, 0, 0, 0}},
    {{0, 2, 1}, {kHalfSqrt2, kHalfSqrt2, 0, 0}},  // 90 degrees about x
    {{1, 0, 2}, {kHalfSqrt2, 0, 0, kHalfSqrt2}},  // 90 degrees about z
    {{1, 2, 0}, {0.5, 0.5, 0.5, 0.5}},            // 120 degrees about (1,1,1)
    {{2, 0, 1}, {0.5, -0.5, -0.5, -0.5}},         // 240 degrees about (1,1,1)
    {{2, 1, 0}, {kHalfSqrt2, 0, kHalfSqrt2, 0}},  // 90 degrees about y
};

// Canonical (rotation, log-scales) of a Gaussian, as described above.
void Canonicalize(const float* q_in, const float* s_in, Quat* q_out, float s_out[3]) {
  Quat q = Normalized(q_in);
  // Stable descending sort of three (NaN last), without std::stable_sort's buffer.
  int order[3] = {0, 1, 2};
  const auto key = [&](int a) { return std::isnan(s_in[a]) ? -std::numeric_limits<float>::infinity() : s_in[a]; };
  const auto order_pair = [&](int a, int b) {
    if (key(order[b]) > key(order[a])) std::swap(order[a], order[b]);
  };
  order_pair(0, 1);
  order_pair(1, 2);
  order_pair(0, 1);
  for (const AxisPermutation& p : kAxisPermutations) {
    if (p.perm[0] == order[0] && p.perm[1] == order[1] && p.perm[2] == order[2]) {
      q = Multiply(q, p.m);
      break;
    }
  }
  for (int d = 0; d < 3; ++d) s_out[d] = s_in[order[d]];
  // q*i = (-x, w, z, -y), q*j = (-y, -z, w, x), q*k = (-z, y, -x, w).
  int largest = 0;
  for (int k = 1; k < 4; ++k)
    if (std::abs(q[k]) > std::abs(q[largest])) largest = k;
  if (largest == 1) q = {-q[1], q[0], q[3], -q[2]};
  if (largest == 2) q = {-q[2], -q[3], q[0], q[1]};
  if (largest == 3) q = {-q[3], q[2], -q[1], q[0]};
  if (q[0] < 0)
    for (double& v : q) v = -v;
  *q_out = q;
}

constexpr uint16_t kRotMid = (1u << (kChunkRotationBits - 1)) - 1;  // code of 0

uint16_t QuantizeRotComponent(double c) {
  return static_cast<uint16_t>((std::clamp(c * kSqrt2, -1.0, 1.0) + 1.0) * kRotMid + 0.5);
}

// Rebuilds a unit quaternion with w >= 0 from the codes of x, y, z.
void DequantizeRotation(const uint16_t codes[3], float* q_out) {
  double q[4];
  double sum = 0;
  for (int k = 0; k < 3; ++k) {
    const double c = (std::min<double>(codes[k], 2 * kRotMid) - kRotMid) / kRotMid / kSqrt2;
    q[k + 1] = c;
    sum += c * c;
  }
  q[0] = std::sqrt(std::max(0.0, 1.0 - sum));
  // Every |c| <= 1/sqrt2, so the norm is > 0 even when w clamps to 0 (corrupt codes).
  double norm2 = 0;
  for (double v : q) norm2 += v * v;
  const double inv = 1.0 / std::sqrt(norm2);
  for (int k = 0; k < 4; ++k) q_out[k] = static_cast<float>(q[k] * inv);
}

// ---------------------------------------------------------------------------
// zstd with reused per-thread contexts.

struct CctxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DctxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

// Worst-case frame size for a payload cut into `planes` zstd blocks.
size_t FrameBound(size_t payload_bytes, size_t planes) { return ZSTD_compressBound(payload_bytes) + 3 * planes + 64; }

// Appends `payload` as one zstd frame (content size and checksum included), ending a
// zstd block at every offset in `plane_ends` so that each plane gets its own literal
// statistics: 1.3 B/Gaussian smaller on guitar than letting planes share blocks.
void AppendZstdFrame(const std::string& payload, const std::vector<size_t>& plane_ends, std::string& out) {
  thread_local std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx(ZSTD_createCCtx());
  ZSTD_CCtx* c = cctx.get();
  ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, kZstdLevel);
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
  ZSTD_CCtx_setPledgedSrcSize(c, payload.size());
  const size_t start = out.size();
  out.resize(start + FrameBound(payload.size(), plane_ends.size()));
  ZSTD_outBuffer ob{out.data() + start, out.size() - start, 0};
  size_t pos = 0;
  for (size_t p = 0; p <= plane_ends.size(); ++p) {
    const bool last = p == plane_ends.size();
    const size_t end = last ? payload.size() : std::min(plane_ends[p], payload.size());
    if (!last && end <= pos) continue;
    ZSTD_inBuffer ib{payload.data() + pos, end - pos, 0};
    for (;;) {
      const size_t remaining = ZSTD_compressStream2(c, &ob, &ib, last ? ZSTD_e_end : ZSTD_e_flush);
      if (ZSTD_isError(remaining)) {  // only on allocation failure
        spdlog::error("zstd compression failed: {}", ZSTD_getErrorName(remaining));
        out.clear();
        return;
      }
      if (remaining == 0) break;
      if (ob.pos == ob.size) {  // not expected within FrameBound, but never loop forever
        const size_t used = ob.pos;
        out.resize(out.size() * 2);
        ob = {out.data() + start, out.size() - start, used};
      }
    }
    pos = end;
  }
  out.resize(start + ob.pos);
}

// Decompresses `frame`, which must be exactly one zstd frame declaring `expected` bytes.
absl::StatusOr<std::string> DecompressExact(absl::string_view frame, uint64_t expected) {
  const unsigned long long declared = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return absl::DataLossError("chunk: payload is not a zstd frame");
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN) return absl::DataLossError("chunk: zstd frame without content size");
  if (declared != expected) {
    return absl::DataLossError(absl::StrCat("chunk: zstd frame holds ", declared, " bytes, header implies ", expected));
  }
  const size_t frame_size = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_size)) return absl::DataLossError("chunk: truncated zstd frame");
  if (frame_size != frame.size()) return absl::DataLossError("chunk: trailing bytes after the zstd frame");
  thread_local std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx(ZSTD_createDCtx());
  ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_and_parameters);
  std::string out(static_cast<size_t>(expected), '\0');
  const size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) return absl::DataLossError(absl::StrCat("chunk: zstd: ", ZSTD_getErrorName(n)));
  if (n != expected) return absl::DataLossError("chunk: zstd frame shorter than declared");
  return out;
}

// ---------------------------------------------------------------------------
// Header.

void PutHeader(std::string& out, ChunkEncoding enc, ChunkKind kind, int sh_degree, uint32_t count) {
  ByteWriter w(&out);
  w.PutBytes(std::string_view(kMagic, sizeof(kMagic)));
  w.Put(kVersion);
  w.Put(enc);
  w.Put(kind);
  w.Put(static_cast<uint8_t>(sh_degree));
  w.Put(count);
}

absl::Status CheckRange(Range r, const char* what) {
  if (!(std::abs(r.lo) <= kMaxMagnitude) || !(std::abs(r.hi) <= kMaxMagnitude) || !(r.lo <= r.hi)) {
    return absl::DataLossError(absl::StrCat("chunk: bad ", what, " range [", r.lo, ", ", r.hi, "]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<BlockInfo> ParseInfo(absl::string_view bytes) {
  ByteReader r(bytes);
  std::string_view magic;
  uint8_t version, enc, kind, sh;
  BlockInfo info;
  if (!r.Bytes(sizeof(kMagic), &magic) || !r.Get(&version) || !r.Get(&enc) || !r.Get(&kind) || !r.Get(&sh) ||
      !r.Get(&info.count)) {
    return absl::DataLossError("chunk: truncated header");
  }
  if (magic != std::string_view(kMagic, sizeof(kMagic))) return absl::DataLossError("chunk: bad magic");
  if (version != kVersion) return absl::DataLossError(absl::StrCat("chunk: unsupported version ", version));
  if (enc != static_cast<uint8_t>(ChunkEncoding::kQuantized) && enc != static_cast<uint8_t>(ChunkEncoding::kLossless)) {
    return absl::DataLossError(absl::StrCat("chunk: unknown encoding ", enc));
  }
  info.encoding = static_cast<ChunkEncoding>(enc);
  if (kind != static_cast<uint8_t>(ChunkKind::kGaussians) && kind != static_cast<uint8_t>(ChunkKind::kPatches) &&
      kind != static_cast<uint8_t>(ChunkKind::kReplacements)) {
    return absl::DataLossError(absl::StrCat("chunk: unknown kind ", kind));
  }
  info.kind = static_cast<ChunkKind>(kind);
  if (sh > kMaxShDegree || (info.kind == ChunkKind::kPatches && sh != 0)) {
    return absl::DataLossError(absl::StrCat("chunk: bad SH degree ", sh));
  }
  info.sh_degree = sh;
  return info;
}

// A parsed block: header fields, quantizer parameters and the decompressed payload.
struct ParsedBlock {
  BlockInfo info;
  std::vector<float> ranges;
  std::vector<int> widths;  // quantized Gaussians: SH rest packing widths
  std::string payload;
};

absl::StatusOr<ParsedBlock> ParseBlock(absl::string_view bytes, ChunkKind want, const BlockLimits& limits) {
  ParsedBlock block;
  FLEXGS_ASSIGN_OR_RETURN(block.info, ParseInfo(bytes));
  const BlockInfo& info = block.info;
  if (info.kind != want) return absl::DataLossError("chunk: unexpected block kind");
  if (info.count > limits.max_count) {
    return absl::DataLossError(absl::StrCat("chunk: ", info.count, " items exceed the limit of ", limits.max_count));
  }
  const size_t header = HeaderBytes(info.encoding, info.kind, info.sh_degree);
  if (bytes.size() < header) return absl::DataLossError("chunk: truncated header");
  uint64_t expected = MaxPayloadBytes(info.encoding, info.kind, info.sh_degree, info.count);
  if (info.encoding == ChunkEncoding::kQuantized) {
    ByteReader r(bytes.substr(kFixedHeaderBytes, header - kFixedHeaderBytes));
    if (!r.Floats(RangeFloats(info.kind, info.sh_degree), &block.ranges)) {
      return absl::DataLossError("chunk: truncated header");
    }
    block.widths.resize(WidthBytes(info.kind, info.sh_degree));
    for (size_t i = 0; i < block.widths.size(); ++i) {
      uint8_t byte;
      if (!r.Get(&byte)) return absl::DataLossError("chunk: truncated header");
      const int w = byte;
      if (w != 0 && w != 1 && w != 2 && w != 4 && w != 8) {
        return absl::DataLossError(absl::StrCat("chunk: bad SH packing width ", w));
      }
      block.widths[i] = w;
    }
    expected = QuantizedPayloadBytes(MakeLayout(info.kind, info.sh_degree, &block.widths), info.count);
  }
  if (expected > limits.max_decompressed_bytes) {
    return absl::DataLossError(
        absl::StrCat("chunk: payload of ", expected, " bytes exceeds the limit of ", limits.max_decompressed_bytes));
  }
  FLEXGS_ASSIGN_OR_RETURN(block.payload, DecompressExact(bytes.substr(header), expected));
  return block;
}

// ---------------------------------------------------------------------------
// Strided attribute access.

struct Strided {
  const float* data;
  size_t stride;
  float operator()(size_t i, size_t c) const { return data[i * stride + c]; }
};

struct StridedOut {
  float* data;
  size_t stride;
  float& operator()(size_t i, size_t c) const { return data[i * stride + c]; }
};

// ---------------------------------------------------------------------------
// Quantized geometry, shared by Gaussians and patches: position, log-scale, rotation.

// Appends the 12 geometry range floats to `header` and fills the geometry codes.
void EncodeGeometry(Strided pos, Strided scale, Strided rot, size_t n, const Layout& l, std::string& header,
                    Codes& codes) {
  std::vector<Quat> q(n);
  std::vector<float> s[3];
  for (auto& v : s) v.resize(n);
  for (size_t i = 0; i < n; ++i) {
    float raw_q[4], raw_s[3], sorted[3];
    for (int k = 0; k < 4; ++k) raw_q[k] = rot(i, k);
    for (int d = 0; d < 3; ++d) raw_s[d] = scale(i, d);
    Canonicalize(raw_q, raw_s, &q[i], sorted);
    for (int d = 0; d < 3; ++d) s[d][i] = sorted[d];
  }
  Range pos_r[3], scale_r[3];
  std::vector<float> tmp(n);
  for (int d = 0; d < 3; ++d) {
    for (size_t i = 0; i < n; ++i) tmp[i] = pos(i, d);
    pos_r[d] = ComputeRange(tmp);
    scale_r[d] = ComputeRange(s[d]);
  }
  ByteWriter w(&header);
  for (const Range* r : {pos_r, scale_r}) {
    for (int d = 0; d < 3; ++d) w.Put(r[d].lo);
    for (int d = 0; d < 3; ++d) w.Put(r[d].hi);
  }
  for (int d = 0; d < 3; ++d) {
    // Positions: delta along the send order (Morton neighbours are close), zigzag.
    std::vector<uint16_t>& p = codes[l.pos + d];
    uint16_t prev = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint16_t code = QuantizeUnit(pos(i, d), pos_r[d], kChunkPositionBits);
      p[i] = ZigZag16(static_cast<uint16_t>(code - prev));
      prev = code;
    }
    for (size_t i = 0; i < n; ++i) codes[l.scale + d][i] = QuantizeUnit(s[d][i], scale_r[d], kChunkScaleBits);
    for (size_t i = 0; i < n; ++i) codes[l.rot + d][i] = QuantizeRotComponent(q[i][d + 1]);
  }
}

absl::Status DecodeGeometry(const float* ranges, size_t n, const Layout& l, const Codes& codes, StridedOut pos,
                            StridedOut scale, StridedOut rot) {
  Range pos_r[3], scale_r[3];
  for (int d = 0; d < 3; ++d) {
    pos_r[d] = {ranges[d], ranges[3 + d]};
    scale_r[d] = {ranges[6 + d], ranges[9 + d]};
    FLEXGS_RETURN_IF_ERROR(CheckRange(pos_r[d], "position"));
    FLEXGS_RETURN_IF_ERROR(CheckRange(scale_r[d], "log-scale"));
  }
  for (int d = 0; d < 3; ++d) {
    const std::vector<uint16_t>& p = codes[l.pos + d];
    uint16_t code = 0;
    for (size_t i = 0; i < n; ++i) {
      code = static_cast<uint16_t>(code + UnZigZag16(p[i]));
      pos(i, d) = DequantizeUnit(code, pos_r[d], kChunkPositionBits);
      scale(i, d) = DequantizeUnit(codes[l.scale + d][i], scale_r[d], kChunkScaleBits);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const uint16_t c3[3] = {codes[l.rot][i], codes[l.rot + 1][i], codes[l.rot + 2][i]};
    DequantizeRotation(c3, &rot(i, 0));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Lossless float planes.

// Non-finite values cannot be represented (the decoder rejects them): NaN -> 0,
// +-inf -> +-FLT_MAX (opacity logits: +-kOpacityLogitLimit, as SanitizeNonFinite).
float FiniteForLossless(float v, bool opacity) {
  if (std::isfinite(v)) return v;
  if (std::isnan(v)) return 0.0f;
  const float limit = opacity ? kOpacityLogitLimit : std::numeric_limits<float>::max();
  return v > 0 ? limit : -limit;
}

// Writes component `c` of n items as 4 byte planes (low byte first) at `out`.
void ShuffleFloats(Strided data, size_t n, size_t c, bool opacity, char* out) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t v;
    const float f = FiniteForLossless(data(i, c), opacity);
    std::memcpy(&v, &f, 4);
    for (int b = 0; b < 4; ++b) out[b * n + i] = static_cast<char>((v >> (8 * b)) & 0xff);
  }
}

absl::Status UnshuffleFloats(const char* in, size_t n, StridedOut data, size_t c) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t v = 0;
    for (int b = 0; b < 4; ++b) v |= static_cast<uint32_t>(static_cast<uint8_t>(in[b * n + i])) << (8 * b);
    float f;
    std::memcpy(&f, &v, 4);
    if (!std::isfinite(f)) return absl::DataLossError("chunk: non-finite value");
    data(i, c) = f;
  }
  return absl::OkStatus();
}

std::vector<size_t> EveryN(size_t total, size_t n) {
  std::vector<size_t> ends;
  for (size_t e = n; n > 0 && e < total; e += n) ends.push_back(e);
  return ends;
}

size_t MaxItemsPerBlock(size_t max_chunk_bytes, ChunkEncoding enc, ChunkKind kind, int sh_degree) {
  const size_t header = HeaderBytes(enc, kind, sh_degree);
  const auto per_item = static_cast<size_t>(MaxPayloadBytes(enc, kind, sh_degree, 1));
  // Planes (zstd blocks) per block: every byte plane, plus 128 KiB splits.
  const size_t planes = per_item + 1;
  const auto fits = [&](size_t n) {
    const size_t payload = n * per_item;
    return header + FrameBound(payload, planes + payload / (128 << 10)) <= max_chunk_bytes;
  };
  if (max_chunk_bytes <= header) return 0;
  size_t n = std::min((max_chunk_bytes - header) / per_item, BlockLimits{}.max_count);
  while (n > 0 && !fits(n)) n -= std::max<size_t>(1, n / 256);
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------
// Gaussians.

std::string EncodeGaussianBlock(const GaussianCloud& cloud, size_t begin, size_t end, ChunkEncoding enc,
                                int sh_degree) {
  if (absl::Status st = cloud.Validate(); !st.ok()) {
    spdlog::error("EncodeGaussianBlock: {}", st.ToString());
    return "";
  }
  if (begin > end || end > cloud.size() || end - begin > std::numeric_limits<uint32_t>::max()) {
    spdlog::error("EncodeGaussianBlock: bad range [{}, {}) of {} Gaussians", begin, end, cloud.size());
    return "";
  }
  if (sh_degree < 0 || sh_degree > cloud.sh_degree) {
    spdlog::error("EncodeGaussianBlock: SH degree {} outside 0..{}", sh_degree, cloud.sh_degree);
    return "";
  }
  if (enc != ChunkEncoding::kQuantized && enc != ChunkEncoding::kLossless) {
    spdlog::error("EncodeGaussianBlock: unknown encoding {}", static_cast<int>(enc));
    return "";
  }
  const size_t n = end - begin;
  const size_t k_src = static_cast<size_t>(cloud.rest_coeffs());
  const size_t k = static_cast<size_t>(ShRestCoeffs(sh_degree));
  const Strided pos{cloud.positions.data() + begin * 3, 3};
  const Strided scale{cloud.log_scales.data() + begin * 3, 3};
  const Strided rot{cloud.rotations.data() + begin * 4, 4};
  const Strided opacity{cloud.opacity_logits.data() + begin, 1};
  const Strided dc{cloud.sh_dc.data() + begin * 3, 3};
  const Strided rest{cloud.sh_rest.data() + begin * 3 * k_src, 3 * k_src};

  std::string out;
  PutHeader(out, enc, ChunkKind::kGaussians, sh_degree, static_cast<uint32_t>(n));
  std::string payload;
  std::vector<size_t> plane_ends;
  if (enc == ChunkEncoding::kLossless) {
    payload.assign(MaxPayloadBytes(enc, ChunkKind::kGaussians, sh_degree, n), '\0');
    plane_ends = EveryN(payload.size(), n);
    char* p = payload.data();
    const auto put = [&](Strided data, size_t comps, bool is_opacity = false) {
      for (size_t c = 0; c < comps; ++c, p += 4 * n) ShuffleFloats(data, n, c, is_opacity, p);
    };
    put(pos, 3);
    put(scale, 3);
    put(rot, 4);
    put(opacity, 1, true);
    put(dc, 3);
    for (size_t c = 0; c < 3; ++c)
      for (size_t j = 0; j < k; ++j, p += 4 * n) ShuffleFloats(rest, n, c * k_src + j, false, p);
    AppendZstdFrame(payload, plane_ends, out);
    return out;
  }

  const Layout l = MakeLayout(ChunkKind::kGaussians, sh_degree);
  Codes codes(l.bits.size(), std::vector<uint16_t>(n));
  EncodeGeometry(pos, scale, rot, n, l, out, codes);
  // Opacity in sigmoid space.
  for (size_t i = 0; i < n; ++i) {
    const double o = 1.0 / (1.0 + std::exp(-static_cast<double>(opacity(i, 0))));
    codes[l.opacity][i] = std::isnan(o) ? 0 : static_cast<uint16_t>(o * Levels(kChunkOpacityBits) + 0.5);
  }
  // SH DC in per-channel ranges, sent as G, R-G, B-G: the channels are correlated.
  std::vector<float> tmp(n);
  Range dc_r[3];
  for (int d = 0; d < 3; ++d) {
    for (size_t i = 0; i < n; ++i) tmp[i] = dc(i, d);
    dc_r[d] = ComputeRange(tmp);
    for (size_t i = 0; i < n; ++i) codes[l.dc + d][i] = QuantizeUnit(tmp[i], dc_r[d], kChunkDcBits);
  }
  ByteWriter w(&out);
  for (int d = 0; d < 3; ++d) w.Put(dc_r[d].lo);
  for (int d = 0; d < 3; ++d) w.Put(dc_r[d].hi);
  for (size_t i = 0; i < n; ++i) {
    const uint16_t g = codes[l.dc + 1][i];
    codes[l.dc][i] = (codes[l.dc][i] - g) & Mask(kChunkDcBits);
    codes[l.dc + 2][i] = (codes[l.dc + 2][i] - g) & Mask(kChunkDcBits);
  }
  // SH rest: one step per band, coarser than kChunkShRestStep only if codes would
  // exceed +-127.
  for (int band = 1; band <= sh_degree; ++band) {
    float max_abs = 0;
    for (size_t c = 0; c < 3 * k; ++c) {
      if (ShBand(c % k) != band) continue;
      for (size_t i = 0; i < n; ++i) {
        const float v = rest(i, (c / k) * k_src + c % k);
        if (std::isfinite(v)) max_abs = std::max(max_abs, std::abs(ClampFinite(v)));
      }
    }
    const float step = std::max(kChunkShRestStep, max_abs / kChunkShRestMaxCode);
    w.Put(step);
    for (size_t c = 0; c < 3 * k; ++c) {
      if (ShBand(c % k) != band) continue;
      for (size_t i = 0; i < n; ++i) codes[l.rest + c][i] = QuantizeStep(rest(i, (c / k) * k_src + c % k), step);
    }
  }
  std::vector<int> widths(3 * k);
  for (size_t c = 0; c < 3 * k; ++c) {
    widths[c] = PackWidth(codes[l.rest + c]);
    w.Put(static_cast<uint8_t>(widths[c]));
  }
  const Layout packed = MakeLayout(ChunkKind::kGaussians, sh_degree, &widths);
  payload.assign(QuantizedPayloadBytes(packed, n), '\0');
  plane_ends = WritePlanes(packed, codes, n, payload);
  AppendZstdFrame(payload, plane_ends, out);
  return out;
}

absl::StatusOr<GaussianCloud> DecodeGaussianBlock(absl::string_view bytes, const BlockLimits& limits) {
  FLEXGS_ASSIGN_OR_RETURN(ParsedBlock block, ParseBlock(bytes, ChunkKind::kGaussians, limits));
  const size_t n = block.info.count;
  GaussianCloud cloud;
  cloud.sh_degree = block.info.sh_degree;
  cloud.Resize(n);
  const size_t k = static_cast<size_t>(cloud.rest_coeffs());
  const StridedOut pos{cloud.positions.data(), 3}, scale{cloud.log_scales.data(), 3}, rot{cloud.rotations.data(), 4},
      opacity{cloud.opacity_logits.data(), 1}, dc{cloud.sh_dc.data(), 3}, rest{cloud.sh_rest.data(), 3 * k};
  if (block.info.encoding == ChunkEncoding::kLossless) {
    const char* p = block.payload.data();
    const auto get = [&](StridedOut data, size_t comps) -> absl::Status {
      for (size_t c = 0; c < comps; ++c, p += 4 * n) FLEXGS_RETURN_IF_ERROR(UnshuffleFloats(p, n, data, c));
      return absl::OkStatus();
    };
    FLEXGS_RETURN_IF_ERROR(get(pos, 3));
    FLEXGS_RETURN_IF_ERROR(get(scale, 3));
    FLEXGS_RETURN_IF_ERROR(get(rot, 4));
    FLEXGS_RETURN_IF_ERROR(get(opacity, 1));
    FLEXGS_RETURN_IF_ERROR(get(dc, 3));
    FLEXGS_RETURN_IF_ERROR(get(rest, 3 * k));
    return cloud;
  }
  const float* ranges = block.ranges.data();
  Range dc_r[3];
  for (int d = 0; d < 3; ++d) {
    dc_r[d] = {ranges[12 + d], ranges[15 + d]};
    FLEXGS_RETURN_IF_ERROR(CheckRange(dc_r[d], "SH DC"));
  }
  float steps[4] = {0, 0, 0, 0};
  for (int band = 1; band <= cloud.sh_degree; ++band) {
    steps[band] = ranges[17 + band];
    if (!(steps[band] >= 0 && steps[band] <= kMaxMagnitude)) {
      return absl::DataLossError(absl::StrCat("chunk: bad SH step ", steps[band]));
    }
  }
  const Layout l = MakeLayout(ChunkKind::kGaussians, cloud.sh_degree, &block.widths);
  const Codes codes = ReadPlanes(l, n, block.payload);
  FLEXGS_RETURN_IF_ERROR(DecodeGeometry(ranges, n, l, codes, pos, scale, rot));
  constexpr uint32_t kOpacityLevels = Levels(kChunkOpacityBits);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t code = codes[l.opacity][i];
    double logit = code == 0 ? -kOpacityLogitLimit : kOpacityLogitLimit;
    if (code > 0 && code < kOpacityLevels) {
      const double o = static_cast<double>(code) / kOpacityLevels;
      logit = std::log(o / (1.0 - o));
    }
    opacity(i, 0) = static_cast<float>(logit);
    const uint16_t g = codes[l.dc + 1][i];
    const uint16_t rgb[3] = {static_cast<uint16_t>((codes[l.dc][i] + g) & Mask(kChunkDcBits)), g,
                             static_cast<uint16_t>((codes[l.dc + 2][i] + g) & Mask(kChunkDcBits))};
    for (int d = 0; d < 3; ++d) dc(i, d) = DequantizeUnit(rgb[d], dc_r[d], kChunkDcBits);
  }
  for (size_t c = 0; c < 3 * k; ++c) {
    const float step = steps[ShBand(c % k)];
    for (size_t i = 0; i < n; ++i) rest(i, c) = DequantizeStep(codes[l.rest + c][i], step);
  }
  return cloud;
}

// ---------------------------------------------------------------------------
// Patches.

std::string EncodePatchBlock(absl::Span<const float> patches, ChunkEncoding enc) {
  if (patches.size() % kPatchStride != 0 || patches.size() / kPatchStride > std::numeric_limits<uint32_t>::max()) {
    spdlog::error("EncodePatchBlock: {} floats is not a whole number of patches", patches.size());
    return "";
  }
  if (enc != ChunkEncoding::kQuantized && enc != ChunkEncoding::kLossless) {
    spdlog::error("EncodePatchBlock: unknown encoding {}", static_cast<int>(enc));
    return "";
  }
  const size_t n = patches.size() / kPatchStride;
  std::string out;
  PutHeader(out, enc, ChunkKind::kPatches, 0, static_cast<uint32_t>(n));
  std::string payload(MaxPayloadBytes(enc, ChunkKind::kPatches, 0, n), '\0');
  std::vector<size_t> plane_ends;
  // An empty block still has a header; never offset a null data() for it (UB).
  static constexpr float kNoPatch[kPatchStride] = {};
  const float* p = n > 0 ? patches.data() : kNoPatch;
  if (enc == ChunkEncoding::kLossless) {
    for (size_t c = 0; c < kPatchStride; ++c) ShuffleFloats({p, kPatchStride}, n, c, false, &payload[4 * n * c]);
    plane_ends = EveryN(payload.size(), n);
  } else {
    const Layout l = MakeLayout(ChunkKind::kPatches, 0);
    Codes codes(l.bits.size(), std::vector<uint16_t>(n));
    EncodeGeometry({p, kPatchStride}, {p + 3, kPatchStride}, {p + 6, kPatchStride}, n, l, out, codes);
    plane_ends = WritePlanes(l, codes, n, payload);
  }
  AppendZstdFrame(payload, plane_ends, out);
  return out;
}

absl::StatusOr<std::vector<float>> DecodePatchBlock(absl::string_view bytes, const BlockLimits& limits) {
  FLEXGS_ASSIGN_OR_RETURN(ParsedBlock block, ParseBlock(bytes, ChunkKind::kPatches, limits));
  const size_t n = block.info.count;
  std::vector<float> patches(n * kPatchStride);
  float no_patch[kPatchStride];  // an empty block: never offset a null data() (UB)
  float* p = n > 0 ? patches.data() : no_patch;
  if (block.info.encoding == ChunkEncoding::kLossless) {
    for (size_t c = 0; c < kPatchStride; ++c) {
      FLEXGS_RETURN_IF_ERROR(UnshuffleFloats(&block.payload[4 * n * c], n, {p, kPatchStride}, c));
    }
    return patches;
  }
  const Layout l = MakeLayout(ChunkKind::kPatches, 0);
  const Codes codes = ReadPlanes(l, n, block.payload);
  FLEXGS_RETURN_IF_ERROR(DecodeGeometry(block.ranges.data(), n, l, codes, {p, kPatchStride}, {p + 3, kPatchStride},
                                        {p + 6, kPatchStride}));
  return patches;
}

// ---------------------------------------------------------------------------
// Replacements: an index frame, then a Gaussian block.

std::string EncodeReplacementBlock(absl::Span<const uint32_t> indices, const GaussianCloud& cloud, size_t begin,
                                   size_t end, ChunkEncoding enc, int sh_degree) {
  if (begin > end || end > cloud.size() || indices.size() != end - begin) {
    spdlog::error("EncodeReplacementBlock: {} indices for Gaussians [{}, {}) of {}", indices.size(), begin, end,
                  cloud.size());
    return "";
  }
  for (size_t i = 1; i < indices.size(); ++i) {
    if (indices[i] <= indices[i - 1]) {
      spdlog::error("EncodeReplacementBlock: indices are not strictly ascending at {}", i);
      return "";
    }
  }
  std::string gaussians = EncodeGaussianBlock(cloud, begin, end, enc, sh_degree);
  if (gaussians.empty()) return "";
  const size_t n = indices.size();
  std::string planes(4 * n, '\0');
  for (size_t i = 0; i < n; ++i) {
    const uint32_t v = i == 0 ? indices[0] : indices[i] - indices[i - 1] - 1;
    for (int b = 0; b < 4; ++b) planes[b * n + i] = static_cast<char>((v >> (8 * b)) & 0xff);
  }
  std::string frame;
  AppendZstdFrame(planes, EveryN(planes.size(), n), frame);
  if (frame.empty()) return "";
  std::string out;
  PutHeader(out, enc, ChunkKind::kReplacements, sh_degree, static_cast<uint32_t>(n));
  ByteWriter(&out).Put(static_cast<uint32_t>(frame.size()));
  out += frame;
  out += gaussians;
  return out;
}

absl::StatusOr<ReplacementBlock> DecodeReplacementBlock(absl::string_view bytes, const BlockLimits& limits) {
  FLEXGS_ASSIGN_OR_RETURN(BlockInfo info, ParseInfo(bytes));
  if (info.kind != ChunkKind::kReplacements) return absl::DataLossError("chunk: unexpected block kind");
  if (info.count > limits.max_count) {
    return absl::DataLossError(absl::StrCat("chunk: ", info.count, " items exceed the limit of ", limits.max_count));
  }
  ByteReader r(bytes.substr(kFixedHeaderBytes));
  uint32_t frame_bytes = 0;
  if (!r.Get(&frame_bytes)) return absl::DataLossError("chunk: truncated replacement header");
  const size_t frame_at = kFixedHeaderBytes + 4;
  if (frame_bytes > bytes.size() - frame_at) return absl::DataLossError("chunk: truncated replacement indices");
  const size_t n = info.count;
  FLEXGS_ASSIGN_OR_RETURN(std::string planes, DecompressExact(bytes.substr(frame_at, frame_bytes), 4 * uint64_t{n}));
  ReplacementBlock block;
  block.indices.resize(n);
  uint64_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t v = 0;
    for (int b = 0; b < 4; ++b) v |= static_cast<uint32_t>(static_cast<uint8_t>(planes[b * n + i])) << (8 * b);
    at = i == 0 ? v : at + 1 + uint64_t{v};
    if (at > std::numeric_limits<uint32_t>::max()) return absl::DataLossError("chunk: replacement index overflows");
    block.indices[i] = static_cast<uint32_t>(at);
  }
  const absl::string_view inner = bytes.substr(frame_at + frame_bytes);
  FLEXGS_ASSIGN_OR_RETURN(BlockInfo inner_info, ParseInfo(inner));
  if (inner_info.encoding != info.encoding) {
    return absl::DataLossError("chunk: replacement Gaussians in another encoding than the block's");
  }
  FLEXGS_ASSIGN_OR_RETURN(block.gaussians, DecodeGaussianBlock(inner, limits));
  if (block.gaussians.size() != n || block.gaussians.sh_degree != info.sh_degree) {
    return absl::DataLossError(absl::StrCat("chunk: replacement block carries ", block.gaussians.size(),
                                            " Gaussians at SH degree ", block.gaussians.sh_degree, ", header says ", n,
                                            " at ", info.sh_degree));
  }
  return block;
}

absl::StatusOr<BlockInfo> ReadBlockInfo(absl::string_view bytes) { return ParseInfo(bytes); }

size_t GaussiansPerBlock(size_t max_chunk_bytes, ChunkEncoding enc, int sh_degree) {
  return MaxItemsPerBlock(max_chunk_bytes, enc, ChunkKind::kGaussians, std::clamp(sh_degree, 0, kMaxShDegree));
}

size_t PatchesPerBlock(size_t max_chunk_bytes, ChunkEncoding enc) {
  return MaxItemsPerBlock(max_chunk_bytes, enc, ChunkKind::kPatches, 0);
}

size_t ReplacementsPerBlock(size_t max_chunk_bytes, ChunkEncoding enc, int sh_degree) {
  // A Gaussian block plus the outer header and the index frame (4 bytes per index, 4
  // planes, zstd's worst case).
  size_t n = GaussiansPerBlock(max_chunk_bytes, enc, sh_degree);
  const auto overhead = [](size_t k) { return kFixedHeaderBytes + 4 + FrameBound(4 * k, 4); };
  while (n > 0 && overhead(n) + 4 * n > max_chunk_bytes) n -= std::max<size_t>(1, n / 64);
  // The Gaussian block's own bound must still hold in what is left.
  while (n > 0 && GaussiansPerBlock(max_chunk_bytes - overhead(n), enc, sh_degree) < n)
    n -= std::max<size_t>(1, n / 64);
  return n;
}

}  // namespace flexgs
