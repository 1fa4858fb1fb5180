#include "io/compressed_ply.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "io/ply_io.h"
#include "tests/support/test_util.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;

constexpr double kC0 = 0.28209479177387814;
constexpr float kInf = std::numeric_limits<float>::infinity();

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

PlyReadOptions Raw() {
  PlyReadOptions o;
  o.sanitize = false;
  return o;
}

void ExpectError(const absl::StatusOr<GaussianCloud>& result, absl::StatusCode code, const std::string& reason) {
  ASSERT_FALSE(result.ok()) << "expected an error containing '" << reason << "'";
  EXPECT_EQ(result.status().code(), code) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(reason));
}

template <typename T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

// ---------------------------------------------------------------------------
// A small independent encoder, written from the format description, so the
// decoder can be checked on arbitrary clouds (and corrupted at will).

struct ChunkBounds {
  float lo[9], hi[9];  // position xyz, log-scale xyz, colour rgb
};

struct CompressedFile {
  std::string header;
  std::string chunk_data, vertex_data, sh_data;
  std::vector<ChunkBounds> bounds;
  std::string Bytes() const { return header + chunk_data + vertex_data + sh_data; }
};

uint32_t PackUnorm(double v, int bits) {
  const double max = (1u << bits) - 1;
  return static_cast<uint32_t>(std::clamp(std::floor(v * max + 0.5), 0.0, max));
}

double Normalize(double x, double lo, double hi) {
  if (hi - lo < 1e-5) return 0.0;
  return std::clamp((x - lo) / (hi - lo), 0.0, 1.0);
}

uint32_t PackRotation(const float* q) {
  double v[4];
  double norm = 0;
  for (int k = 0; k < 4; ++k) norm += double(q[k]) * q[k];
  norm = std::sqrt(norm);
  int largest = 0;
  for (int k = 0; k < 4; ++k) {
    v[k] = q[k] / norm;
    if (std::abs(v[k]) > std::abs(v[largest])) largest = k;
  }
  const double sign = v[largest] < 0 ? -1 : 1;
  uint32_t packed = static_cast<uint32_t>(largest);
  for (int k = 0; k < 4; ++k) {
    if (k != largest) packed = (packed << 10) | PackUnorm(sign * v[k] * std::sqrt(0.5) + 0.5, 10);
  }
  return packed;
}

CompressedFile Encode(const GaussianCloud& c, bool chunk_color = true) {
  const size_t n = c.size();
  const size_t chunks = (n + 255) / 256;
  const size_t k3 = 3 * static_cast<size_t>(c.rest_coeffs());
  CompressedFile f;
  f.header = absl::StrCat("ply\nformat binary_little_endian 1.0\ncomment test encoder\nelement chunk ", chunks, "\n");
  for (const char* name : {"min_x", "min_y", "min_z", "max_x", "max_y", "max_z", "min_scale_x", "min_scale_y",
                           "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"}) {
    absl::StrAppend(&f.header, "property float ", name, "\n");
  }
  if (chunk_color) {
    for (const char* name : {"min_r", "min_g", "min_b", "max_r", "max_g", "max_b"}) {
      absl::StrAppend(&f.header, "property float ", name, "\n");
    }
  }
  absl::StrAppend(&f.header, "element vertex ", n, "\nproperty uint packed_position\nproperty uint packed_rotation\n",
                  "property uint packed_scale\nproperty uint packed_color\n");
  if (k3 > 0) {
    absl::StrAppend(&f.header, "element sh ", n, "\n");
    for (size_t k = 0; k < k3; ++k) absl::StrAppend(&f.header, "property uchar f_rest_", k, "\n");
  }
  f.header += "end_header\n";

  auto colour = [&](size_t i, int ch) { return 0.5 + kC0 * c.sh_dc[3 * i + ch]; };
  for (size_t ci = 0; ci < chunks; ++ci) {
    const size_t begin = ci * 256, end = std::min(n, begin + 256);
    ChunkBounds b;
    for (int d = 0; d < 9; ++d) {
      b.lo[d] = std::numeric_limits<float>::max();
      b.hi[d] = -std::numeric_limits<float>::max();
    }
    for (size_t i = begin; i < end; ++i) {
      for (int d = 0; d < 3; ++d) {
        const float vals[3] = {c.positions[3 * i + d], c.log_scales[3 * i + d], static_cast<float>(colour(i, d))};
        for (int g = 0; g < 3; ++g) {
          b.lo[3 * g + d] = std::min(b.lo[3 * g + d], vals[g]);
          b.hi[3 * g + d] = std::max(b.hi[3 * g + d], vals[g]);
        }
      }
    }
    if (!chunk_color) {
      for (int d = 6; d < 9; ++d) b.lo[d] = 0, b.hi[d] = 1;
    }
    f.bounds.push_back(b);
    for (int d = 0; d < 3; ++d) Put(f.chunk_data, b.lo[d]);
    for (int d = 0; d < 3; ++d) Put(f.chunk_data, b.hi[d]);
    for (int d = 3; d < 6; ++d) Put(f.chunk_data, b.lo[d]);
    for (int d = 3; d < 6; ++d) Put(f.chunk_data, b.hi[d]);
    if (chunk_color) {
      for (int d = 6; d < 9; ++d) Put(f.chunk_data, b.lo[d]);
      for (int d = 6; d < 9; ++d) Put(f.chunk_data, b.hi[d]);
    }
    auto pack111011 = [&](const float* v, int group) {
      const int g = 3 * group;
      return PackUnorm(Normalize(v[0], b.lo[g], b.hi[g]), 11) << 21 |
             PackUnorm(Normalize(v[1], b.lo[g + 1], b.hi[g + 1]), 10) << 11 |
             PackUnorm(Normalize(v[2], b.lo[g + 2], b.hi[g + 2]), 11);
    };
    for (size_t i = begin; i < end; ++i) {
      Put(f.vertex_data, pack111011(&c.positions[3 * i], 0));
      Put(f.vertex_data, PackRotation(&c.rotations[4 * i]));
      Put(f.vertex_data, pack111011(&c.log_scales[3 * i], 1));
      uint32_t rgba = 0;
      for (int ch = 0; ch < 3; ++ch) {
        rgba |= PackUnorm(Normalize(colour(i, ch), b.lo[6 + ch], b.hi[6 + ch]), 8) << (24 - 8 * ch);
      }
      rgba |= PackUnorm(Sigmoid(c.opacity_logits[i]), 8);
      Put(f.vertex_data, rgba);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < k3; ++k) {
      const double q = std::floor((c.sh_rest[k3 * i + k] / 8.0 + 0.5) * 256.0);
      f.sh_data.push_back(static_cast<char>(static_cast<uint8_t>(std::clamp(q, 0.0, 255.0))));
    }
  }
  return f;
}

GaussianCloud RandomCloud(size_t n, int degree, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> pos(-5, 5), log_scale(-6, 0), sh(-3.5f, 3.5f);
  std::normal_distribution<float> normal(0, 1);
  GaussianCloud c;
  c.sh_degree = degree;
  c.Resize(n);
  for (float& v : c.positions) v = pos(rng);
  for (float& v : c.log_scales) v = log_scale(rng);
  for (float& v : c.rotations) v = normal(rng);
  for (float& v : c.sh_dc) v = normal(rng);
  for (float& v : c.opacity_logits) v = 3 * normal(rng);
  for (float& v : c.sh_rest) v = sh(rng);
  return c;
}

// Checks `dec` against `ref` within the format's quantization, per Gaussian, using
// the chunk bounds the file stores:
//   position / log-scale axis: half a quantization step, (hi - lo) / (2^bits - 1) / 2,
//                              with bits = 11, 10, 11 for x, y, z
//   colour (0.5 + C0 * f_dc):  half an 8-bit step of the chunk's colour range
//   opacity:                   half an 8-bit step in sigmoid space, 0.5 / 255
//   rotation (normalized, sign-aligned): 0.004 per component; the three stored
//                              components are within sqrt(2)/1023/2 = 0.0007, the
//                              reconstructed largest one (>= 0.5) within ~4x that
//   f_rest:                    one 8-bit bucket of [-4, 4], 8 / 256
// plus a small epsilon for float rounding.
void ExpectWithinQuantization(const GaussianCloud& dec, const GaussianCloud& ref,
                              const std::vector<ChunkBounds>& bounds) {
  ASSERT_EQ(dec.size(), ref.size());
  ASSERT_EQ(dec.sh_degree, ref.sh_degree);
  const int bits[3] = {11, 10, 11};
  size_t failures = 0;
  auto check = [&](bool ok, size_t i, const char* what, double a, double b, double tol) {
    if (!ok && ++failures <= 10)
      ADD_FAILURE() << what << " of Gaussian " << i << ": " << a << " vs " << b << " (tolerance " << tol << ")";
  };
  const size_t k3 = 3 * static_cast<size_t>(ref.rest_coeffs());
  for (size_t i = 0; i < ref.size(); ++i) {
    const ChunkBounds& b = bounds[i / 256];
    for (int d = 0; d < 3; ++d) {
      for (int g = 0; g < 2; ++g) {
        const double extent = double(b.hi[3 * g + d]) - b.lo[3 * g + d];
        const double tol =
            0.5 * extent / ((1 << bits[d]) - 1) + 1e-6 * (1 + std::abs(b.hi[3 * g + d]) + std::abs(b.lo[3 * g + d]));
        const float a = g == 0 ? dec.positions[3 * i + d] : dec.log_scales[3 * i + d];
        const float r = g == 0 ? ref.positions[3 * i + d] : ref.log_scales[3 * i + d];
        check(std::abs(double(a) - r) <= tol, i, g == 0 ? "position" : "log_scale", a, r, tol);
      }
      const double ctol = 0.5 * (double(b.hi[6 + d]) - b.lo[6 + d]) / 255 + 1e-6;
      const double ca = 0.5 + kC0 * dec.sh_dc[3 * i + d], cr = 0.5 + kC0 * ref.sh_dc[3 * i + d];
      check(std::abs(ca - cr) <= ctol, i, "colour", ca, cr, ctol);
    }
    const double oa = Sigmoid(dec.opacity_logits[i]), orf = Sigmoid(ref.opacity_logits[i]);
    check(std::abs(oa - orf) <= 0.5 / 255 + 1e-6, i, "opacity", dec.opacity_logits[i], ref.opacity_logits[i],
          0.5 / 255);
    double qa[4], qr[4], na = 0, nr = 0, dot = 0;
    for (int k = 0; k < 4; ++k) {
      qa[k] = dec.rotations[4 * i + k], qr[k] = ref.rotations[4 * i + k];
      na += qa[k] * qa[k], nr += qr[k] * qr[k], dot += qa[k] * qr[k];
    }
    for (int k = 0; k < 4; ++k) {
      const double a = qa[k] / std::sqrt(na), r = (dot < 0 ? -1 : 1) * qr[k] / std::sqrt(nr);
      check(std::abs(a - r) <= 0.004, i, "rotation", a, r, 0.004);
    }
    for (size_t k = 0; k < k3; ++k) {
      const float a = dec.sh_rest[k3 * i + k], r = ref.sh_rest[k3 * i + k];
      check(std::abs(a - r) <= 8.0 / 256 + 1e-6, i, "f_rest", a, r, 8.0 / 256);
    }
  }
  EXPECT_EQ(failures, 0u);
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// ---------------------------------------------------------------------------

TEST(CompressedPlyTest, DecodesTheDocumentedBitLayout) {
  GaussianCloud one = RandomCloud(3, 1, 1);
  CompressedFile f = Encode(one);
  // Overwrite the chunk bounds and packed words with hand-chosen values.
  f.chunk_data.clear();
  for (float v :
       {-1.f, -2.f, -3.f, 1.f, 2.f, 3.f, -5.f, -5.f, -5.f, 0.f, 1.f, 2.f, 0.1f, 0.2f, 0.3f, 0.9f, 0.8f, 0.7f}) {
    Put(f.chunk_data, v);
  }
  f.vertex_data.clear();
  const uint32_t rotation = (2u << 30) | (1023u << 20) | (512u << 10) | 512u;
  for (uint32_t alpha : {255u, 0u, 128u}) {
    Put(f.vertex_data, (2047u << 21) | (0u << 11) | 1023u);
    Put(f.vertex_data, rotation);
    Put(f.vertex_data, (1024u << 21) | (1023u << 11) | 0u);
    Put(f.vertex_data, (255u << 24) | (0u << 16) | (128u << 8) | alpha);
  }
  f.sh_data.assign(27, '\0');
  f.sh_data[1] = static_cast<char>(255);
  f.sh_data[2] = static_cast<char>(128);

  absl::StatusOr<PlyHeader> header = ParsePlyHeader(f.Bytes());
  ASSERT_TRUE(header.ok()) << header.status();
  ASSERT_TRUE(IsCompressedPly(*header));
  absl::StatusOr<GaussianCloud> c = DecodeCompressedPly(*header, f.Bytes());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 3u);
  ASSERT_EQ(c->sh_degree, 1);
  constexpr float kTol = 1e-6f;
  // Position 11-10-11: x at max, y at min, z at 1023/2047 of [-3, 3].
  EXPECT_NEAR(c->positions[0], 1.0f, kTol);
  EXPECT_NEAR(c->positions[1], -2.0f, kTol);
  EXPECT_NEAR(c->positions[2], -3.0f + 6.0f * 1023 / 2047, kTol);
  // Rotation: index 2 (rot_2) is the dropped largest; the others in order rot_0, rot_1, rot_3.
  const float r0 = (1.0f - 0.5f) * std::sqrt(2.0f), r1 = (512.0f / 1023 - 0.5f) * std::sqrt(2.0f);
  EXPECT_NEAR(c->rotations[0], r0, kTol);
  EXPECT_NEAR(c->rotations[1], r1, kTol);
  EXPECT_NEAR(c->rotations[2], std::sqrt(1 - r0 * r0 - 2 * r1 * r1), kTol);
  EXPECT_NEAR(c->rotations[3], r1, kTol);
  // Log-scale 11-10-11 within its own bounds.
  EXPECT_NEAR(c->log_scales[0], -5.0f + 5.0f * 1024 / 2047, kTol);
  EXPECT_NEAR(c->log_scales[1], 1.0f, kTol);
  EXPECT_NEAR(c->log_scales[2], -5.0f, kTol);
  // Colour: SH0-activated within the chunk colour bounds, then inverted to f_dc.
  EXPECT_NEAR(c->sh_dc[0], (0.9 - 0.5) / kC0, 1e-5);
  EXPECT_NEAR(c->sh_dc[1], (0.2 - 0.5) / kC0, 1e-5);
  EXPECT_NEAR(c->sh_dc[2], (0.3 + 0.4 * 128 / 255 - 0.5) / kC0, 1e-5);
  // Alpha is sigmoid(opacity): 255 and 0 are exactly 1 and 0, i.e. infinite logits.
  EXPECT_EQ(c->opacity_logits[0], kInf);
  EXPECT_EQ(c->opacity_logits[1], -kInf);
  EXPECT_NEAR(c->opacity_logits[2], -std::log(255.0 / 128 - 1), kTol);
  // SH: uchar 0 -> -4, 255 -> +4, others the bucket centre 8 * ((q + 0.5)/256 - 0.5).
  EXPECT_EQ(c->sh_rest[0], -4.0f);
  EXPECT_EQ(c->sh_rest[1], 4.0f);
  EXPECT_EQ(c->sh_rest[2], 0.015625f);
}

TEST(CompressedPlyTest, RandomCloudsRoundTripWithinQuantization) {
  for (int degree : {0, 1, 3}) {
    for (bool chunk_color : {true, false}) {
      SCOPED_TRACE(absl::StrCat("degree ", degree, " chunk colour ", chunk_color));
      // 3 full chunks and a partial one.
      GaussianCloud cloud = RandomCloud(3 * 256 + 17, degree, 100 + degree);
      if (!chunk_color) {
        for (float& v : cloud.sh_dc) v = std::clamp(v, -1.7f, 1.7f);  // colour must lie in [0, 1]
      }
      const CompressedFile f = Encode(cloud, chunk_color);
      PlyReadReport report;
      absl::StatusOr<GaussianCloud> dec = ParseGaussianPly(f.Bytes(), Raw(), &report);
      ASSERT_TRUE(dec.ok()) << dec.status();
      EXPECT_EQ(report.format, "compressed");
      EXPECT_EQ(report.vertices, cloud.size());
      EXPECT_EQ(report.sh_degree, degree);
      ExpectWithinQuantization(*dec, cloud, f.bounds);
    }
  }
}

TEST(CompressedPlyTest, SanitizeHandlesSaturatedAlpha) {
  GaussianCloud cloud = RandomCloud(300, 0, 5);
  cloud.opacity_logits[0] = 50;     // alpha rounds to 255 -> +inf
  cloud.opacity_logits[299] = -50;  // alpha rounds to 0 -> -inf
  const std::string bytes = Encode(cloud).Bytes();
  PlyReadReport report;
  absl::StatusOr<GaussianCloud> raw = ParseGaussianPly(bytes, Raw(), &report);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->opacity_logits[0], kInf);
  EXPECT_EQ(raw->opacity_logits[299], -kInf);
  const size_t infinite = report.non_finite.opacity_clamped;
  EXPECT_GE(infinite, 2u);
  absl::StatusOr<GaussianCloud> clean = ParseGaussianPly(bytes, {}, &report);
  ASSERT_TRUE(clean.ok());
  EXPECT_EQ(report.non_finite.opacity_clamped, infinite);
  EXPECT_EQ(report.non_finite.dropped, 0u);
  EXPECT_EQ(clean->opacity_logits[0], kOpacityLogitLimit);
  EXPECT_EQ(clean->opacity_logits[299], -kOpacityLogitLimit);
}

TEST(CompressedPlyTest, CorruptFilesAreRejected) {
  const GaussianCloud cloud = RandomCloud(600, 1, 9);  // 3 chunks
  const CompressedFile good = Encode(cloud);
  ASSERT_TRUE(ParseGaussianPly(good.Bytes()).ok());
  const std::string bytes = good.Bytes();

  ExpectError(ParseGaussianPly(bytes.substr(0, bytes.size() - 5)), absl::StatusCode::kDataLoss, "truncated");
  ExpectError(ParseGaussianPly(bytes.substr(0, good.header.size() + 100)), absl::StatusCode::kDataLoss, "truncated");
  ExpectError(ParseGaussianPly(bytes + "xx"), absl::StatusCode::kInvalidArgument, "trailing bytes");

  auto with_header = [&](const std::string& header) {
    return header + good.chunk_data + good.vertex_data + good.sh_data;
  };
  // Chunk count must be ceil(600 / 256) = 3.
  ExpectError(ParseGaussianPly(with_header(Replace(good.header, "element chunk 3", "element chunk 2"))),
              absl::StatusCode::kInvalidArgument, "wrong chunk count: 2 chunks for 600 vertices");
  ExpectError(ParseGaussianPly(with_header(Replace(good.header, "element chunk 3", "element chunk 4"))),
              absl::StatusCode::kInvalidArgument, "wrong chunk count");
  ExpectError(ParseGaussianPly(with_header(Replace(good.header, "min_scale_x", "min_scale_q"))),
              absl::StatusCode::kInvalidArgument, "no property 'min_scale_x'");
  ExpectError(ParseGaussianPly(with_header(Replace(good.header, "property float min_r\n", "property float min_q\n"))),
              absl::StatusCode::kInvalidArgument, "colour bounds");
  ExpectError(ParseGaussianPly(with_header(Replace(good.header, "uint packed_position", "float packed_position"))),
              absl::StatusCode::kInvalidArgument, "'vertex.packed_position' must be of type uint");
  ExpectError(ParseGaussianPly(with_header(Replace(good.header, "uchar f_rest_3", "float f_rest_3"))),
              absl::StatusCode::kInvalidArgument, "must be of type uchar");
  ExpectError(ParseGaussianPly(with_header(Replace(good.header, "element sh 600", "element sh 599"))),
              absl::StatusCode::kInvalidArgument, "'sh' has 599 rows");
  ExpectError(ParseGaussianPly(with_header(Replace(good.header, "property uchar f_rest_8\n", ""))),
              absl::StatusCode::kInvalidArgument, "bad f_rest count");
  ExpectError(ParseGaussianPly(with_header(Replace(good.header, "binary_little_endian", "binary_big_endian"))),
              absl::StatusCode::kInvalidArgument, "must be binary_little_endian");

  // No chunk element at all (header and data both without it).
  std::string no_chunk = good.header;
  no_chunk.erase(no_chunk.find("element chunk"), no_chunk.find("element vertex") - no_chunk.find("element chunk"));
  ExpectError(ParseGaussianPly(no_chunk + good.vertex_data + good.sh_data), absl::StatusCode::kInvalidArgument,
              "no 'chunk' element");
}

TEST(CompressedPlyTest, RandomCorruptionNeverCrashes) {
  const std::string good = Encode(RandomCloud(300, 2, 11)).Bytes();
  const size_t header_end = good.find("end_header") + 11;
  std::mt19937 rng(99);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s = good;
    const size_t at = std::uniform_int_distribution<size_t>(0, (rng() % 2 ? header_end : s.size()) - 1)(rng);
    switch (rng() % 3) {
      case 0:
        s[at] ^= static_cast<char>(1 + rng() % 255);
        break;
      case 1:
        s.resize(at);
        break;
      case 2:
        s.insert(at, std::to_string(rng() % 1000));
        break;
    }
    absl::StatusOr<GaussianCloud> r = ParseGaussianPly(s);
    if (r.ok()) {
      ASSERT_TRUE(r->Validate().ok());
    }
  }
}

// ---------------------------------------------------------------------------
// The real scene: guitar.ply was decompressed from guitar.compressed.ply.

std::vector<ChunkBounds> ReadChunkBounds(const std::string& bytes) {
  std::vector<ChunkBounds> out;
  absl::StatusOr<PlyHeader> header = ParsePlyHeader(bytes);
  EXPECT_TRUE(header.ok());
  if (!header.ok()) return out;
  absl::StatusOr<std::vector<std::string_view>> spans = SplitBinaryElements(*header, bytes);
  EXPECT_TRUE(spans.ok());
  if (!spans.ok()) return out;
  const PlyElement* chunk = header->FindElement("chunk");
  const std::string_view data = (*spans)[chunk - header->elements.data()];
  const char* lo_names[9] = {"min_x",       "min_y", "min_z", "min_scale_x", "min_scale_y",
                             "min_scale_z", "min_r", "min_g", "min_b"};
  const char* hi_names[9] = {"max_x",       "max_y", "max_z", "max_scale_x", "max_scale_y",
                             "max_scale_z", "max_r", "max_g", "max_b"};
  for (uint64_t c = 0; c < chunk->count; ++c) {
    ChunkBounds b;
    for (int k = 0; k < 9; ++k) {
      std::memcpy(&b.lo[k],
                  data.data() + c * chunk->RowBytes() + chunk->PropertyOffset(chunk->FindProperty(lo_names[k])), 4);
      std::memcpy(&b.hi[k],
                  data.data() + c * chunk->RowBytes() + chunk->PropertyOffset(chunk->FindProperty(hi_names[k])), 4);
    }
    out.push_back(b);
  }
  return out;
}

TEST(CompressedPlyRealSceneTest, GuitarMatchesTheUncompressedScene) {
  FLEXGS_REQUIRE_DATA(compressed_path, "guitar.compressed.ply");
  FLEXGS_REQUIRE_DATA(plain_path, "guitar.ply");
  absl::StatusOr<std::string> bytes = ReadFileToString(compressed_path);
  ASSERT_TRUE(bytes.ok());
  PlyReadReport report;
  absl::StatusOr<GaussianCloud> dec = ParseGaussianPly(*bytes, Raw(), &report);
  ASSERT_TRUE(dec.ok()) << dec.status();
  absl::StatusOr<GaussianCloud> ref = ReadGaussianPly(plain_path, Raw());
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(dec->size(), 90'854u);
  EXPECT_EQ(report.format, "compressed");
  EXPECT_EQ(report.sh_degree, 0);
  // The 667 infinite logits of guitar.ply come from alpha bytes 0 and 255.
  EXPECT_EQ(report.non_finite.opacity_clamped, 667u);
  EXPECT_EQ(report.non_finite.dropped, 0u);
  for (size_t i = 0; i < ref->size(); ++i) {
    if (std::isinf(ref->opacity_logits[i])) {
      ASSERT_EQ(dec->opacity_logits[i], ref->opacity_logits[i]) << i;
    }
  }
  const std::vector<ChunkBounds> bounds = ReadChunkBounds(*bytes);
  ASSERT_EQ(bounds.size(), 355u);
  ExpectWithinQuantization(*dec, *ref, bounds);

  // Stronger than the quantization bounds: guitar.ply was produced by a decoder that
  // works in double precision like ours, so every value agrees to within one float ulp
  // (exactly, unless the compiler contracts a*b+c into an FMA, as x86-64-v3 builds may).
  // A larger mismatch means the decoding arithmetic drifted (e.g. float intermediates).
  size_t exact = 0, total = 0;
  for (auto [a, b] : {std::pair{&dec->positions, &ref->positions},
                      {&dec->log_scales, &ref->log_scales},
                      {&dec->rotations, &ref->rotations},
                      {&dec->sh_dc, &ref->sh_dc},
                      {&dec->opacity_logits, &ref->opacity_logits}}) {
    for (size_t k = 0; k < a->size(); ++k) {
      const float x = (*a)[k], y = (*b)[k];
      exact += x == y || std::nextafter(x, y) == y, ++total;
    }
  }
  std::printf("guitar.compressed.ply: %zu of %zu decoded values within 1 ulp of guitar.ply\n", exact, total);
  EXPECT_EQ(exact, total);

  // With sanitize, the compressed file gives the same clean cloud as guitar.ply.
  absl::StatusOr<GaussianCloud> clean = ParseGaussianPly(*bytes, {}, &report);
  ASSERT_TRUE(clean.ok());
  EXPECT_EQ(report.non_finite.opacity_clamped, 667u);
  EXPECT_EQ(clean->size(), 90'854u);
}

}  // namespace
}  // namespace flexgs
