#include "io/compressed_ply.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace flexgs {
namespace {

constexpr double kShC0 = 0.28209479177387814;

// Chunk columns in the order they are used below: position min/max, log-scale
// min/max, then the optional colour min/max.
constexpr std::array<const char*, 12> kChunkRequired = {"min_x",       "min_y",       "min_z",       "max_x",
                                                        "max_y",       "max_z",       "min_scale_x", "min_scale_y",
                                                        "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"};
constexpr std::array<const char*, 6> kChunkColor = {"min_r", "min_g", "min_b", "max_r", "max_g", "max_b"};
constexpr std::array<const char*, 4> kVertexPacked = {"packed_position", "packed_rotation", "packed_scale",
                                                      "packed_color"};

// Byte offset of `name` in a row of `element`, checking that it exists with `type`.
absl::StatusOr<uint64_t> ColumnOffset(const PlyElement& element, const char* name, PlyScalarType type,
                                      const char* type_name) {
  const int index = element.FindProperty(name);
  if (index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("compressed PLY: element '", element.name, "' has no property '", name, "'"));
  }
  if (element.properties[index].is_list || element.properties[index].type != type) {
    return absl::InvalidArgumentError(
        absl::StrCat("compressed PLY: property '", element.name, ".", name, "' must be of type ", type_name));
  }
  return element.PropertyOffset(index);
}

// Unsigned normalized integer of `bits` bits at the bottom of `value`, in [0, 1].
// Decoding runs in double, like the reference JavaScript decoders, so results
// match theirs to the last float bit.
double Unorm(uint32_t value, int bits) {
  const uint32_t max = (uint32_t{1} << bits) - 1;
  return static_cast<double>(value & max) / max;
}

double Lerp(double a, double b, double t) { return a * (1 - t) + b * t; }

// Decodes 11-10-11 bits into the box [lo, hi] (3 floats each) and writes 3 floats.
void Unpack111011(uint32_t packed, const float* lo, const float* hi, float* out) {
  out[0] = static_cast<float>(Lerp(lo[0], hi[0], Unorm(packed >> 21, 11)));
  out[1] = static_cast<float>(Lerp(lo[1], hi[1], Unorm(packed >> 11, 10)));
  out[2] = static_cast<float>(Lerp(lo[2], hi[2], Unorm(packed, 11)));
}

// Smallest-three quaternion: the top 2 bits name the largest component of
// (rot_0..rot_3), which the encoder made positive and dropped; the other three
// follow in order as 10-bit unorm of v/sqrt(2) + 0.5 (|v| <= 1/sqrt(2)).
void UnpackRotation(uint32_t packed, float* out) {
  const double norm = 1.0 / (std::sqrt(2.0) * 0.5);
  const double a = (Unorm(packed >> 20, 10) - 0.5) * norm;
  const double b = (Unorm(packed >> 10, 10) - 0.5) * norm;
  const double c = (Unorm(packed, 10) - 0.5) * norm;
  const double largest = std::sqrt(std::max(0.0, 1.0 - (a * a + b * b + c * c)));
  const int which = static_cast<int>(packed >> 30);
  const double rest[3] = {a, b, c};
  for (int k = 0, r = 0; k < 4; ++k) out[k] = static_cast<float>(k == which ? largest : rest[r++]);
}

// Opacity logit from the stored sigmoid value; 0 and 1 give -inf / +inf on purpose
// (the exact inverse; SanitizeNonFinite decides what to do with them).
float OpacityLogit(double alpha) { return static_cast<float>(-std::log(1.0 / alpha - 1.0)); }

// uchar SH coefficient to its value in [-4, 4]; the encoder stores
// floor((v/8 + 0.5) * 256) clamped, so the bucket centre is the best estimate.
float ShValue(uint8_t q) {
  const double n = q == 0 ? 0.0 : q == 255 ? 1.0 : (q + 0.5) / 256.0;
  return static_cast<float>((n - 0.5) * 8.0);
}

struct ShLayout {
  int degree = 0;
  std::vector<uint64_t> offsets;  // offsets[f] = byte offset of f_rest_f in an sh row
};

absl::StatusOr<ShLayout> ValidateSh(const PlyElement& sh, uint64_t vertices) {
  ShLayout layout;
  const int n = static_cast<int>(sh.properties.size());
  layout.degree = -1;
  for (int d = 1; d <= kMaxShDegree; ++d) {
    if (3 * ShRestCoeffs(d) == n) layout.degree = d;
  }
  if (layout.degree < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("compressed PLY: bad f_rest count: element 'sh' has ", n, " properties; expected 9, 24 or 45"));
  }
  if (sh.count != vertices) {
    return absl::InvalidArgumentError(
        absl::StrCat("compressed PLY: element 'sh' has ", sh.count, " rows but there are ", vertices, " vertices"));
  }
  for (int f = 0; f < n; ++f) {
    const std::string name = absl::StrCat("f_rest_", f);
    FLEXGS_ASSIGN_OR_RETURN(uint64_t offset, ColumnOffset(sh, name.c_str(), PlyScalarType::kUint8, "uchar"));
    layout.offsets.push_back(offset);
  }
  return layout;
}

}  // namespace

bool IsCompressedPly(const PlyHeader& header) {
  const PlyElement* vertex = header.FindElement("vertex");
  return vertex != nullptr && vertex->FindProperty("packed_position") >= 0;
}

absl::StatusOr<GaussianCloud> DecodeCompressedPly(const PlyHeader& header, std::string_view bytes) {
  if (header.encoding != PlyEncoding::kBinaryLittleEndian) {
    return absl::InvalidArgumentError("compressed PLY must be binary_little_endian");
  }
  const PlyElement* vertex = header.FindElement("vertex");
  const PlyElement* chunk = header.FindElement("chunk");
  const PlyElement* sh = header.FindElement("sh");
  if (vertex == nullptr) return absl::InvalidArgumentError("compressed PLY has no 'vertex' element");
  if (chunk == nullptr) {
    return absl::InvalidArgumentError("compressed PLY (vertex has packed_position) has no 'chunk' element");
  }
  const uint64_t n = vertex->count;
  const uint64_t expected_chunks = n / kCompressedPlyChunkSize + (n % kCompressedPlyChunkSize != 0);
  if (chunk->count != expected_chunks) {
    return absl::InvalidArgumentError(absl::StrCat("compressed PLY: wrong chunk count: ", chunk->count, " chunks for ",
                                                   n, " vertices, expected ceil(", n, "/256) = ", expected_chunks));
  }

  std::array<uint64_t, 12> chunk_offsets;
  for (size_t k = 0; k < kChunkRequired.size(); ++k) {
    FLEXGS_ASSIGN_OR_RETURN(chunk_offsets[k],
                            ColumnOffset(*chunk, kChunkRequired[k], PlyScalarType::kFloat32, "float"));
  }
  int color_columns = 0;
  for (const char* name : kChunkColor) color_columns += chunk->FindProperty(name) >= 0;
  if (color_columns != 0 && color_columns != 6) {
    return absl::InvalidArgumentError(
        absl::StrCat("compressed PLY: chunk colour bounds need all of min_r..max_b, found ", color_columns, " of 6"));
  }
  const bool has_chunk_color = color_columns == 6;
  std::array<uint64_t, 6> color_offsets{};
  if (has_chunk_color) {
    for (size_t k = 0; k < kChunkColor.size(); ++k) {
      FLEXGS_ASSIGN_OR_RETURN(color_offsets[k], ColumnOffset(*chunk, kChunkColor[k], PlyScalarType::kFloat32, "float"));
    }
  }
  std::array<uint64_t, 4> packed_offsets;
  for (size_t k = 0; k < kVertexPacked.size(); ++k) {
    FLEXGS_ASSIGN_OR_RETURN(packed_offsets[k], ColumnOffset(*vertex, kVertexPacked[k], PlyScalarType::kUint32, "uint"));
  }
  ShLayout sh_layout;
  if (sh != nullptr) {
    FLEXGS_ASSIGN_OR_RETURN(sh_layout, ValidateSh(*sh, n));
  }

  // Checks every element's size against the bytes present before anything is allocated.
  FLEXGS_ASSIGN_OR_RETURN(std::vector<std::string_view> spans, SplitBinaryElements(header, bytes));
  auto span_of = [&](const PlyElement* e) { return spans[e - header.elements.data()]; };
  const char* chunk_data = span_of(chunk).data();
  const char* vertex_data = span_of(vertex).data();
  const char* sh_data = sh != nullptr ? span_of(sh).data() : nullptr;
  const uint64_t chunk_row = chunk->RowBytes();
  const uint64_t vertex_row = vertex->RowBytes();
  const uint64_t sh_row = sh != nullptr ? sh->RowBytes() : 0;

  GaussianCloud cloud;
  cloud.sh_degree = sh_layout.degree;
  cloud.Resize(n);
  const size_t k3 = 3 * static_cast<size_t>(cloud.rest_coeffs());
  auto load_f32 = [](const char* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  };
  auto load_u32 = [](const char* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  };
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "compressed PLY decoding assumes a little-endian host");

  // Alpha has only 256 values; the log is the costliest step of decoding otherwise.
  std::array<float, 256> opacity_table;
  for (uint32_t a = 0; a < 256; ++a) opacity_table[a] = OpacityLogit(Unorm(a, 8));

  for (uint64_t c = 0; c < expected_chunks; ++c) {
    const char* crow = chunk_data + c * chunk_row;
    float bounds[12];  // pos min xyz, pos max xyz, scale min xyz, scale max xyz
    for (int k = 0; k < 12; ++k) bounds[k] = load_f32(crow + chunk_offsets[k]);
    float color_bounds[6] = {0, 0, 0, 1, 1, 1};  // without chunk colours rgb is stored in [0, 1]
    if (has_chunk_color) {
      for (int k = 0; k < 6; ++k) color_bounds[k] = load_f32(crow + color_offsets[k]);
    }
    const uint64_t end = std::min(n, (c + 1) * kCompressedPlyChunkSize);
    for (uint64_t i = c * kCompressedPlyChunkSize; i < end; ++i) {
      const char* vrow = vertex_data + i * vertex_row;
      Unpack111011(load_u32(vrow + packed_offsets[0]), bounds + 0, bounds + 3, &cloud.positions[3 * i]);
      UnpackRotation(load_u32(vrow + packed_offsets[1]), &cloud.rotations[4 * i]);
      Unpack111011(load_u32(vrow + packed_offsets[2]), bounds + 6, bounds + 9, &cloud.log_scales[3 * i]);
      const uint32_t color = load_u32(vrow + packed_offsets[3]);
      for (int ch = 0; ch < 3; ++ch) {
        const double rgb = Lerp(color_bounds[ch], color_bounds[3 + ch], Unorm(color >> (24 - 8 * ch), 8));
        cloud.sh_dc[3 * i + ch] = static_cast<float>((rgb - 0.5) / kShC0);
      }
      cloud.opacity_logits[i] = opacity_table[color & 0xff];
      if (sh_data != nullptr) {
        const char* srow = sh_data + i * sh_row;
        for (size_t f = 0; f < k3; ++f) {
          cloud.sh_rest[k3 * i + f] = ShValue(static_cast<uint8_t>(srow[sh_layout.offsets[f]]));
        }
      }
    }
  }
  return cloud;
}

}  // namespace flexgs
