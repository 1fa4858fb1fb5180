#include "io/ply_io.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_util.h"

namespace flexgs {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr float kInf = std::numeric_limits<float>::infinity();

// A cloud with arbitrary (not just "nice") floats, plus a few edge values that a
// sloppy ASCII writer would not round-trip: -0, a denormal, the largest float.
GaussianCloud RandomCloud(size_t n, int degree, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  GaussianCloud c;
  c.sh_degree = degree;
  c.Resize(n);
  for (auto* v : {&c.positions, &c.log_scales, &c.rotations, &c.opacity_logits, &c.sh_dc, &c.sh_rest}) {
    for (float& x : *v) x = normal(rng) * std::exp(normal(rng));
  }
  c.positions[0] = -0.0f;
  c.positions[1] = 1e-40f;  // denormal
  c.positions[2] = std::numeric_limits<float>::max();
  c.opacity_logits[n - 1] = 0.1f;
  return c;
}

// Bitwise equality of every array (so -0 vs 0 and NaN payloads count as different).
void ExpectBitwiseEqual(const GaussianCloud& a, const GaussianCloud& b) {
  ASSERT_EQ(a.sh_degree, b.sh_degree);
  ASSERT_EQ(a.size(), b.size());
  auto same = [](const std::vector<float>& x, const std::vector<float>& y, const char* name) {
    ASSERT_EQ(x.size(), y.size()) << name;
    for (size_t i = 0; i < x.size(); ++i) {
      uint32_t bx, by;
      std::memcpy(&bx, &x[i], 4);
      std::memcpy(&by, &y[i], 4);
      ASSERT_EQ(bx, by) << name << "[" << i << "]: " << x[i] << " vs " << y[i];
    }
  };
  same(a.positions, b.positions, "positions");
  same(a.log_scales, b.log_scales, "log_scales");
  same(a.rotations, b.rotations, "rotations");
  same(a.opacity_logits, b.opacity_logits, "opacity_logits");
  same(a.sh_dc, b.sh_dc, "sh_dc");
  same(a.sh_rest, b.sh_rest, "sh_rest");
}

PlyReadOptions Raw() {
  PlyReadOptions o;
  o.sanitize = false;
  return o;
}

template <typename T>
void ExpectError(const absl::StatusOr<T>& result, absl::StatusCode code, const std::string& reason) {
  ASSERT_FALSE(result.ok()) << "expected an error containing '" << reason << "'";
  EXPECT_EQ(result.status().code(), code) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(reason));
}

// ---------------------------------------------------------------------------
// Hand-written PLY files.

struct Prop {
  std::string type;  // PLY type name
  std::string name;
};

void AppendBinary(std::string& out, const std::string& type, double v, bool big_endian) {
  char buf[8];
  size_t size = 0;
  auto put = [&](auto x) {
    std::memcpy(buf, &x, sizeof(x));
    size = sizeof(x);
  };
  if (type == "char" || type == "int8")
    put(static_cast<int8_t>(v));
  else if (type == "uchar" || type == "uint8")
    put(static_cast<uint8_t>(v));
  else if (type == "short" || type == "int16")
    put(static_cast<int16_t>(v));
  else if (type == "ushort" || type == "uint16")
    put(static_cast<uint16_t>(v));
  else if (type == "int" || type == "int32")
    put(static_cast<int32_t>(v));
  else if (type == "uint" || type == "uint32")
    put(static_cast<uint32_t>(v));
  else if (type == "float" || type == "float32")
    put(static_cast<float>(v));
  else if (type == "double" || type == "float64")
    put(v);
  else
    ADD_FAILURE() << "bad type " << type;
  if (big_endian) std::reverse(buf, buf + size);
  out.append(buf, size);
}

// A PLY with one `vertex` element. `format` is the PLY format keyword.
// `before`/`after` are raw header lines for extra elements and `before_data`/
// `after_data` their (already encoded) data.
struct PlySpec {
  std::string format = "binary_little_endian";
  std::vector<Prop> props;
  std::vector<std::vector<double>> rows;
  std::string before, before_data, after, after_data;
  std::string comments;
};

std::string MakePly(const PlySpec& s) {
  std::string out =
      absl::StrCat("ply\nformat ", s.format, " 1.0\n", s.comments, s.before, "element vertex ", s.rows.size(), "\n");
  for (const Prop& p : s.props) absl::StrAppend(&out, "property ", p.type, " ", p.name, "\n");
  absl::StrAppend(&out, s.after, "end_header\n", s.before_data);
  for (const auto& row : s.rows) {
    for (size_t j = 0; j < row.size(); ++j) {
      if (s.format == "ascii") {
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%.17g", row[j]);
        absl::StrAppend(&out, buf, j + 1 == row.size() ? "\n" : " ");
      } else {
        AppendBinary(out, s.props[j].type, row[j], s.format == "binary_big_endian");
      }
    }
  }
  out += s.after_data;
  return out;
}

// The 14 required properties, all float, in INRIA order minus normals.
std::vector<Prop> MinimalProps() {
  std::vector<Prop> p;
  for (const char* n : {"x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                        "rot_0", "rot_1", "rot_2", "rot_3"}) {
    p.push_back({"float", n});
  }
  return p;
}

// A valid minimal file with `n` Gaussians whose values are small integers.
PlySpec MinimalSpec(size_t n, const std::string& format = "binary_little_endian") {
  PlySpec s;
  s.format = format;
  s.props = MinimalProps();
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> row;
    for (size_t j = 0; j < s.props.size(); ++j) row.push_back(static_cast<double>(i * 100 + j));
    s.rows.push_back(row);
  }
  return s;
}

// Value of property `name` for Gaussian `i` of `cloud` (f_rest_k via the INRIA index).
float ValueOf(const GaussianCloud& c, size_t i, const std::string& name) {
  const size_t k3 = 3 * static_cast<size_t>(c.rest_coeffs());
  if (name == "x" || name == "y" || name == "z") return c.positions[3 * i + (name[0] - 'x')];
  if (name.rfind("f_dc_", 0) == 0) return c.sh_dc[3 * i + std::stoi(name.substr(5))];
  if (name.rfind("f_rest_", 0) == 0) return c.sh_rest[k3 * i + std::stoi(name.substr(7))];
  if (name == "opacity") return c.opacity_logits[i];
  if (name.rfind("scale_", 0) == 0) return c.log_scales[3 * i + std::stoi(name.substr(6))];
  if (name.rfind("rot_", 0) == 0) return c.rotations[4 * i + std::stoi(name.substr(4))];
  ADD_FAILURE() << "unknown " << name;
  return 0;
}

// A degree-1 spec with properties shuffled, normals, and three unknown properties of
// assorted types. Values are integers/2, exactly representable in every float type.
PlySpec ShuffledSpec(const std::string& format, const std::string& float_type) {
  PlySpec s;
  s.format = format;
  for (const char* n : {"x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
                        "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"}) {
    s.props.push_back({float_type, n});
  }
  for (int k = 0; k < 9; ++k) s.props.push_back({float_type, absl::StrCat("f_rest_", k)});
  s.props.push_back({"uchar", "red"});
  s.props.push_back({"double", "confidence"});
  s.props.push_back({"int", "segment_id"});
  std::shuffle(s.props.begin(), s.props.end(), std::mt19937(42));
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> value(-200, 200);
  for (int i = 0; i < 6; ++i) {
    std::vector<double> row;
    for (const Prop& p : s.props) row.push_back(p.type == "uchar" ? 200 : p.type == "int" ? -5 : value(rng) / 2.0);
    s.rows.push_back(row);
  }
  return s;
}

void ExpectMatchesSpec(const GaussianCloud& c, const PlySpec& s) {
  ASSERT_EQ(c.size(), s.rows.size());
  for (size_t i = 0; i < s.rows.size(); ++i) {
    for (size_t j = 0; j < s.props.size(); ++j) {
      const std::string& name = s.props[j].name;
      if (name[0] == 'n' || name == "red" || name == "confidence" || name == "segment_id") continue;
      EXPECT_EQ(ValueOf(c, i, name), static_cast<float>(s.rows[i][j])) << name << " of Gaussian " << i;
    }
  }
}

// ---------------------------------------------------------------------------
// Round trips.

struct RoundTripCase {
  PlyFormat format;
  int degree;
};

class PlyRoundTripTest : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(PlyRoundTripTest, SerializeThenParseIsBitwiseIdentical) {
  const auto [format, degree] = GetParam();
  GaussianCloud cloud = RandomCloud(777, degree, 1234 + degree);
  cloud.opacity_logits[5] = kInf;  // infinities must survive both encodings
  cloud.opacity_logits[6] = -kInf;
  const std::string bytes = SerializeGaussianPly(cloud, format);
  PlyReadReport report;
  absl::StatusOr<GaussianCloud> back = ParseGaussianPly(bytes, Raw(), &report);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectBitwiseEqual(cloud, *back);
  EXPECT_EQ(report.vertices, 777u);
  EXPECT_EQ(report.sh_degree, degree);
  EXPECT_EQ(report.format, format == PlyFormat::kAscii ? "ascii" : "binary_little_endian");
  EXPECT_TRUE(report.had_normals);
  EXPECT_TRUE(report.ignored_properties.empty());
  EXPECT_EQ(report.non_finite.opacity_clamped, 2u);
  EXPECT_EQ(report.non_finite.dropped, 0u);
  EXPECT_EQ(report.file_bytes, bytes.size());
}

INSTANTIATE_TEST_SUITE_P(FormatsAndDegrees, PlyRoundTripTest,
                         ::testing::Values(RoundTripCase{PlyFormat::kBinaryLittleEndian, 0},
                                           RoundTripCase{PlyFormat::kBinaryLittleEndian, 3},
                                           RoundTripCase{PlyFormat::kAscii, 0}, RoundTripCase{PlyFormat::kAscii, 3}),
                         [](const auto& info) {
                           return absl::StrCat(info.param.format == PlyFormat::kAscii ? "Ascii" : "Binary", "Degree",
                                               info.param.degree);
                         });

TEST(PlyWriteTest, WritesExactInriaLayout) {
  const GaussianCloud cloud = RandomCloud(10, 3, 5);
  const std::string bytes = SerializeGaussianPly(cloud);
  std::string expected = "ply\nformat binary_little_endian 1.0\nelement vertex 10\n";
  for (const char* n : {"x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"})
    absl::StrAppend(&expected, "property float ", n, "\n");
  for (int k = 0; k < 45; ++k) absl::StrAppend(&expected, "property float f_rest_", k, "\n");
  for (const char* n : {"opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"})
    absl::StrAppend(&expected, "property float ", n, "\n");
  expected += "end_header\n";
  ASSERT_THAT(bytes, StartsWith(expected));
  // 62 floats (248 bytes) per Gaussian, like every INRIA file.
  EXPECT_EQ(bytes.size(), expected.size() + 10 * 248);
  // Normals are zero; f_rest_{c*15+j} is channel c, coefficient j (channel-major).
  const char* row3 = bytes.data() + expected.size() + 3 * 248;
  float v[62];
  std::memcpy(v, row3, sizeof(v));
  EXPECT_EQ(v[3], 0.0f);
  EXPECT_EQ(v[5], 0.0f);
  EXPECT_EQ(v[0], cloud.positions[9]);
  EXPECT_EQ(v[9 + 1 * 15 + 4], cloud.sh_rest[3 * 45 + 1 * 15 + 4]);
  EXPECT_EQ(v[54], cloud.opacity_logits[3]);
  EXPECT_EQ(v[58], cloud.rotations[12]);
}

TEST(PlyWriteTest, WriteGaussianPlyRoundTripsThroughAFile) {
  const auto dir = testing::ScratchDir();
  const std::string path = (dir / "scene.ply").string();
  const GaussianCloud cloud = RandomCloud(300, 2, 77);
  ASSERT_TRUE(WriteGaussianPly(path, cloud).ok());
  absl::StatusOr<GaussianCloud> back = ReadGaussianPly(path, Raw());
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectBitwiseEqual(cloud, *back);
  // Atomic write: only the target remains, no temporary files.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()), 1);
}

TEST(PlyWriteTest, RejectsAnInvalidCloud) {
  GaussianCloud cloud = RandomCloud(4, 1, 1);
  cloud.sh_rest.pop_back();
  const auto dir = testing::ScratchDir();
  const absl::Status st = WriteGaussianPly((dir / "bad.ply").string(), cloud);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.ply"));
  EXPECT_EQ(SerializeGaussianPly(cloud), "");
}

// ---------------------------------------------------------------------------
// Layout variants that must all read the same values.

TEST(PlyReadTest, PropertyOrderAndUnknownPropertiesDoNotMatter) {
  for (const char* format : {"binary_little_endian", "binary_big_endian", "ascii"}) {
    SCOPED_TRACE(format);
    const PlySpec spec = ShuffledSpec(format, "float");
    PlyReadReport report;
    absl::StatusOr<GaussianCloud> cloud = ParseGaussianPly(MakePly(spec), {}, &report);
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    EXPECT_EQ(cloud->sh_degree, 1);
    ExpectMatchesSpec(*cloud, spec);
    EXPECT_EQ(report.format, format);
    EXPECT_TRUE(report.had_normals);
    EXPECT_THAT(report.ignored_properties, ::testing::UnorderedElementsAre("red", "confidence", "segment_id"));
  }
}

TEST(PlyReadTest, DoubleAndIntegerTypedPropertiesAreConverted) {
  for (const char* type : {"double", "float64", "float32"}) {
    SCOPED_TRACE(type);
    const PlySpec spec = ShuffledSpec("binary_little_endian", type);
    absl::StatusOr<GaussianCloud> cloud = ParseGaussianPly(MakePly(spec));
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    ExpectMatchesSpec(*cloud, spec);
  }
  // Every integer type, in both byte orders (values fit all of them).
  for (const char* format : {"binary_little_endian", "binary_big_endian", "ascii"}) {
    PlySpec spec = MinimalSpec(3, format);
    const char* types[] = {"char",  "uchar", "short",  "ushort", "int",    "uint",   "int8",
                           "uint8", "int16", "uint16", "int32",  "uint32", "double", "float"};
    for (size_t j = 0; j < spec.props.size(); ++j) spec.props[j].type = types[j];
    for (auto& row : spec.rows)
      for (double& v : row) v = std::fmod(v, 100.0);
    SCOPED_TRACE(format);
    absl::StatusOr<GaussianCloud> cloud = ParseGaussianPly(MakePly(spec));
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    ExpectMatchesSpec(*cloud, spec);
  }
}

TEST(PlyReadTest, SkipsOtherElementsCommentsAndObjInfo) {
  for (const char* format : {"binary_little_endian", "ascii"}) {
    SCOPED_TRACE(format);
    PlySpec spec = MinimalSpec(4, format);
    spec.comments = "comment made by hand\nobj_info nothing here\n";
    spec.before = "element camera 2\nproperty double fx\nproperty uchar id\n";
    spec.after = "element extra 3\nproperty short s\n";
    if (std::string(format) == "ascii") {
      spec.before_data = "500.5 1\n600.25 2\n";
      spec.after_data = "1\n2\n3\n";
    } else {
      for (int c = 0; c < 2; ++c) {
        AppendBinary(spec.before_data, "double", 500.5 + c, false);
        AppendBinary(spec.before_data, "uchar", c, false);
      }
      for (int c = 0; c < 3; ++c) AppendBinary(spec.after_data, "short", c, false);
    }
    absl::StatusOr<GaussianCloud> cloud = ParseGaussianPly(MakePly(spec));
    ASSERT_TRUE(cloud.ok()) << cloud.status();
    ExpectMatchesSpec(*cloud, spec);
  }
}

TEST(PlyReadTest, AcceptsCrlfHeaderAndAsciiLines) {
  PlySpec spec = MinimalSpec(2, "ascii");
  std::string bytes = MakePly(spec);
  std::string crlf;
  for (char ch : bytes) {
    if (ch == '\n') crlf += '\r';
    crlf += ch;
  }
  absl::StatusOr<GaussianCloud> cloud = ParseGaussianPly(crlf);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  ExpectMatchesSpec(*cloud, spec);
}

TEST(PlyReadTest, AsciiDataMayEndWithoutNewline) {
  // The shortest complete data -- single-digit values, no newline after the last --
  // used to fail the size bound taken before allocating ("truncated").
  PlySpec spec = MinimalSpec(1, "ascii");
  for (double& v : spec.rows[0]) v = 0;
  std::string bytes = MakePly(spec);
  ASSERT_EQ(bytes.back(), '\n');
  bytes.pop_back();
  absl::StatusOr<GaussianCloud> cloud = ParseGaussianPly(bytes);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  ExpectMatchesSpec(*cloud, spec);
}

TEST(PlyReadTest, AsciiDecimalsBeyondDoubleRangeSaturate) {
  // Beyond double's range std::from_chars leaves its output untouched: 1e400 used to
  // read as 0 instead of +inf, -1e-400 as +0 instead of -0.
  const std::string good = MakePly(MinimalSpec(2, "ascii"));
  std::string bytes = good;
  bytes.replace(bytes.find("end_header\n0 ") + 11, 1, "1e400");
  bytes.replace(bytes.find("\n100 ") + 1, 3, "-1e-400");
  PlyReadOptions raw;
  raw.sanitize = false;
  absl::StatusOr<GaussianCloud> cloud = ParseGaussianPly(bytes, raw);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  EXPECT_EQ(cloud->positions[0], std::numeric_limits<float>::infinity());
  EXPECT_EQ(cloud->positions[3], 0.0f);
  EXPECT_TRUE(std::signbit(cloud->positions[3]));
  // Beyond long double too: rejected, not guessed.
  bytes = good;
  bytes.replace(bytes.find("end_header\n0 ") + 11, 1, "1e99999");
  ExpectError(ParseGaussianPly(bytes), absl::StatusCode::kInvalidArgument, "non-numeric value '1e99999'");
}

// ---------------------------------------------------------------------------
// Bad files: every one is rejected with its reason, none crashes.

TEST(PlyBadFileTest, HeaderProblems) {
  ExpectError(ParseGaussianPly(""), absl::StatusCode::kInvalidArgument, "empty");
  ExpectError(ParseGaussianPly("hello world\n"), absl::StatusCode::kInvalidArgument, "not a PLY");
  ExpectError(ParseGaussianPly("plyx\n"), absl::StatusCode::kInvalidArgument, "not a PLY");

  std::string good = MakePly(MinimalSpec(2));
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  ExpectError(ParseGaussianPly(replace("binary_little_endian", "binary_middle_endian")),
              absl::StatusCode::kInvalidArgument, "unsupported PLY format 'binary_middle_endian'");
  ExpectError(ParseGaussianPly(replace(" 1.0\n", " 2.0\n")), absl::StatusCode::kInvalidArgument,
              "unsupported PLY version");
  ExpectError(ParseGaussianPly(replace("format binary_little_endian 1.0\n", "")), absl::StatusCode::kInvalidArgument,
              "no format line");
  // Without end_header the binary data is read as a last, unterminated header line.
  ExpectError(ParseGaussianPly(replace("end_header\n", "")), absl::StatusCode::kInvalidArgument, "no end_header");
  ExpectError(ParseGaussianPly(good.substr(0, good.find("end_header"))), absl::StatusCode::kInvalidArgument,
              "no end_header");
  ExpectError(ParseGaussianPly(replace("property float y", "property flaot y")), absl::StatusCode::kInvalidArgument,
              "unknown property type");
  ExpectError(ParseGaussianPly(replace("element vertex 2", "element vertex -2")), absl::StatusCode::kInvalidArgument,
              "element count");
  ExpectError(ParseGaussianPly(replace("element vertex 2", "element vertex two")), absl::StatusCode::kInvalidArgument,
              "element count");
  ExpectError(ParseGaussianPly(replace("property float y", "property float x")), absl::StatusCode::kInvalidArgument,
              "duplicate property");
  ExpectError(ParseGaussianPly(replace("element vertex", "elephant vertex")), absl::StatusCode::kInvalidArgument,
              "unknown keyword");
  ExpectError(ParseGaussianPly(replace("element vertex", "element face")), absl::StatusCode::kInvalidArgument,
              "no 'vertex' element");
}

TEST(PlyBadFileTest, AbsurdlyLongHeader) {
  std::string bytes = "ply\nformat binary_little_endian 1.0\n";
  while (bytes.size() < 70 * 1024) bytes += "comment padding padding padding padding padding padding\n";
  bytes += MakePly(MinimalSpec(1)).substr(4);
  ExpectError(ParseGaussianPly(bytes), absl::StatusCode::kInvalidArgument, "header too long");
}

TEST(PlyBadFileTest, MissingRequiredPropertyIsNamed) {
  for (const char* missing : {"x", "opacity", "scale_1", "rot_3", "f_dc_2"}) {
    PlySpec spec = MinimalSpec(2);
    for (size_t j = 0; j < spec.props.size(); ++j) {
      if (spec.props[j].name == missing) spec.props[j].name = "something_else";
    }
    ExpectError(ParseGaussianPly(MakePly(spec)), absl::StatusCode::kInvalidArgument,
                absl::StrCat("missing required vertex property ", missing));
  }
}

TEST(PlyBadFileTest, BadFRestCountOrNumbering) {
  PlySpec spec = MinimalSpec(2);
  for (int k = 0; k < 5; ++k) spec.props.push_back({"float", absl::StrCat("f_rest_", k)});
  for (auto& row : spec.rows) row.resize(spec.props.size(), 0.5);
  ExpectError(ParseGaussianPly(MakePly(spec)), absl::StatusCode::kInvalidArgument, "bad f_rest count: 5");

  spec = MinimalSpec(2);
  for (int k = 0; k < 9; ++k) spec.props.push_back({"float", absl::StrCat("f_rest_", k == 4 ? 9 : k)});
  for (auto& row : spec.rows) row.resize(spec.props.size(), 0.5);
  ExpectError(ParseGaussianPly(MakePly(spec)), absl::StatusCode::kInvalidArgument, "f_rest_9");

  spec.props[spec.props.size() - 1].name = "f_rest_x";
  ExpectError(ParseGaussianPly(MakePly(spec)), absl::StatusCode::kInvalidArgument, "f_rest_x");
}

TEST(PlyBadFileTest, ZeroVertices) {
  for (const char* format : {"binary_little_endian", "ascii"}) {
    ExpectError(ParseGaussianPly(MakePly(MinimalSpec(0, format))), absl::StatusCode::kInvalidArgument, "zero vertices");
  }
}

TEST(PlyBadFileTest, AbsurdVertexCountFailsFastWithoutAllocating) {
  for (const char* format : {"binary_little_endian", "ascii"}) {
    SCOPED_TRACE(format);
    std::string bytes = MakePly(MinimalSpec(10, format));  // well under 1 KB of data
    bytes.replace(bytes.find("element vertex 10"), 17, "element vertex 4000000000");
    ExpectError(ParseGaussianPly(bytes), absl::StatusCode::kInvalidArgument,
                "vertex count 4000000000 exceeds the limit");
    // Even with the limit lifted, the size check comes before any allocation: 4e9
    // Gaussians would need ~224 GB, so getting an error at all proves it.
    PlyReadOptions lifted;
    lifted.max_vertices = uint64_t{1} << 40;
    const auto start = std::chrono::steady_clock::now();
    ExpectError(ParseGaussianPly(bytes, lifted), absl::StatusCode::kDataLoss, "truncated");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  }
}

TEST(PlyBadFileTest, TruncatedBinaryData) {
  const std::string good = MakePly(MinimalSpec(10));
  const std::string bytes = good.substr(0, good.size() - 7);
  ExpectError(ParseGaussianPly(bytes), absl::StatusCode::kDataLoss,
              "truncated: expected 560 bytes of vertex data, found 553");
  // Cut inside the header's end: still a clean error.
  ExpectError(ParseGaussianPly(good.substr(0, good.find("end_header") + 5)), absl::StatusCode::kInvalidArgument,
              "end_header");
}

TEST(PlyBadFileTest, TrailingBytesMeanACountMismatch) {
  std::string bytes = MakePly(MinimalSpec(10));
  bytes.replace(bytes.find("element vertex 10"), 17, "element vertex 9");
  ExpectError(ParseGaussianPly(bytes), absl::StatusCode::kInvalidArgument, "56 unexpected trailing bytes");
  ExpectError(ParseGaussianPly(MakePly(MinimalSpec(10)) + "garbage"), absl::StatusCode::kInvalidArgument,
              "trailing bytes");
}

TEST(PlyBadFileTest, BadAsciiData) {
  const std::string good = MakePly(MinimalSpec(3, "ascii"));
  // Missing value on the second vertex line.
  std::string missing = good;
  const size_t line2 = missing.find("100 ");
  missing.erase(line2, 4);
  ExpectError(ParseGaussianPly(missing), absl::StatusCode::kInvalidArgument, "expected 14 values, found 13");
  std::string word = good;
  word.replace(word.find("105"), 3, "abc");
  ExpectError(ParseGaussianPly(word), absl::StatusCode::kInvalidArgument, "non-numeric value 'abc'");
  std::string half = good;
  half.replace(half.find("105"), 3, "1.5.");
  ExpectError(ParseGaussianPly(half), absl::StatusCode::kInvalidArgument, "non-numeric");
  // Fewer lines than declared, and more.
  ExpectError(ParseGaussianPly(good.substr(0, good.rfind("200 "))), absl::StatusCode::kDataLoss,
              "truncated: expected 3 'vertex' rows");
  ExpectError(ParseGaussianPly(good + "1 2 3\n"), absl::StatusCode::kInvalidArgument,
              "unexpected data after the declared 3 vertices");
}

TEST(PlyBadFileTest, ListProperties) {
  PlySpec spec = MinimalSpec(2);
  spec.props.push_back({"list uchar int", "indices"});
  ExpectError(ParseGaussianPly(MakePly(spec)), absl::StatusCode::kInvalidArgument,
              "lists are not supported in the vertex element");
  spec = MinimalSpec(2);
  spec.after = "element face 1\nproperty list uchar int vertex_indices\n";
  spec.after_data = std::string("\x03\0\0\0\0\1\0\0\0\2\0\0\0", 13);
  ExpectError(ParseGaussianPly(MakePly(spec)), absl::StatusCode::kInvalidArgument,
              "list properties are not supported in binary PLY files");
  // In ASCII files other elements are skipped line by line, lists included.
  spec = MinimalSpec(2, "ascii");
  spec.after = "element face 1\nproperty list uchar int vertex_indices\n";
  spec.after_data = "3 0 1 2\n";
  EXPECT_TRUE(ParseGaussianPly(MakePly(spec)).ok());
}

TEST(PlyBadFileTest, FileSystemErrors) {
  const auto dir = testing::ScratchDir();
  const std::string missing = (dir / "nope.ply").string();
  absl::StatusOr<GaussianCloud> r = ReadGaussianPly(missing);
  ExpectError(r, absl::StatusCode::kNotFound, "no such file");
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(missing));
  ExpectError(ReadGaussianPly(dir.string()), absl::StatusCode::kInvalidArgument, "is a directory");
  // Parse errors from files carry the path too.
  const std::string empty = (dir / "empty.ply").string();
  ASSERT_TRUE(WriteFileAtomically(empty, "").ok());
  r = ReadGaussianPly(empty);
  ExpectError(r, absl::StatusCode::kInvalidArgument, "empty");
  EXPECT_THAT(std::string(r.status().message()), StartsWith(empty + ": "));
}

TEST(PlyBadFileTest, RandomCorruptionNeverCrashes) {
  // Deterministic mutations of valid files: every result must be a clean error or
  // a valid cloud (run under -DFLEXGS_SANITIZE=ON to also catch memory errors).
  const std::vector<std::string> seeds = {
      SerializeGaussianPly(RandomCloud(40, 1, 3)),
      SerializeGaussianPly(RandomCloud(20, 0, 4), PlyFormat::kAscii),
      MakePly(ShuffledSpec("binary_big_endian", "double")),
  };
  std::mt19937 rng(2024);
  int parsed = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s = seeds[iter % seeds.size()];
    const size_t header_end = s.find("end_header") + 11;
    auto pos = [&](size_t limit) { return std::uniform_int_distribution<size_t>(0, limit - 1)(rng); };
    switch (rng() % 4) {
      case 0:  // flip a byte, mostly in the header
        s[pos(rng() % 2 ? header_end : s.size())] ^= static_cast<char>(1 + rng() % 255);
        break;
      case 1:  // truncate
        s.resize(pos(s.size()));
        break;
      case 2:  // insert junk
        s.insert(pos(s.size()), std::string(1 + rng() % 16, static_cast<char>(rng())));
        break;
      case 3: {  // rewrite a number in the header (element counts, versions)
        size_t at = pos(header_end);
        while (at < header_end && !std::isdigit(static_cast<unsigned char>(s[at]))) ++at;
        if (at < header_end) s.replace(at, 1, std::to_string(rng() % 3 == 0 ? rng() : rng() % 100));
        break;
      }
    }
    absl::StatusOr<GaussianCloud> r = ParseGaussianPly(s);
    if (r.ok()) {
      ++parsed;
      ASSERT_TRUE(r->Validate().ok());
    } else {
      ASSERT_FALSE(r.status().message().empty());
    }
  }
  EXPECT_GT(parsed, 0);  // some mutations (e.g. in values) stay valid
}

// ---------------------------------------------------------------------------
// Non-finite values.

TEST(PlySanitizeTest, ClampsInfiniteOpacityAndDropsNaNGaussians) {
  GaussianCloud cloud = RandomCloud(20, 1, 9);
  cloud.opacity_logits[2] = kInf;
  cloud.opacity_logits[3] = -kInf;
  cloud.positions[5 * 3 + 1] = std::nanf("");
  cloud.sh_rest[7 * 9 + 4] = -kInf;
  const std::string bytes = SerializeGaussianPly(cloud);

  PlyReadReport report;
  absl::StatusOr<GaussianCloud> clean = ParseGaussianPly(bytes, {}, &report);
  ASSERT_TRUE(clean.ok()) << clean.status();
  EXPECT_EQ(report.non_finite.opacity_clamped, 2u);
  EXPECT_EQ(report.non_finite.dropped, 2u);
  EXPECT_EQ(report.vertices, 20u);
  ASSERT_EQ(clean->size(), 18u);
  EXPECT_EQ(clean->opacity_logits[2], kOpacityLogitLimit);
  EXPECT_EQ(clean->opacity_logits[3], -kOpacityLogitLimit);
  for (const auto* v : {&clean->positions, &clean->sh_rest, &clean->opacity_logits}) {
    for (float x : *v) ASSERT_TRUE(std::isfinite(x));
  }

  // Without sanitize: same counts, values untouched.
  absl::StatusOr<GaussianCloud> raw = ParseGaussianPly(bytes, Raw(), &report);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(report.non_finite.opacity_clamped, 2u);
  EXPECT_EQ(report.non_finite.dropped, 2u);
  ASSERT_EQ(raw->size(), 20u);
  EXPECT_EQ(raw->opacity_logits[2], kInf);
  EXPECT_TRUE(std::isnan(raw->positions[16]));
}

// ---------------------------------------------------------------------------
// Real scenes.

TEST(PlyRealSceneTest, GuitarLoadsWithItsKnownQuirks) {
  FLEXGS_REQUIRE_DATA(path, "guitar.ply");
  PlyReadReport report;
  absl::StatusOr<GaussianCloud> cloud = ReadGaussianPly(path, {}, &report);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  EXPECT_EQ(cloud->size(), 90'854u);
  EXPECT_EQ(cloud->sh_degree, 0);
  EXPECT_EQ(report.vertices, 90'854u);
  EXPECT_EQ(report.format, "binary_little_endian");
  EXPECT_FALSE(report.had_normals);
  EXPECT_TRUE(report.ignored_properties.empty());
  EXPECT_EQ(report.non_finite.opacity_clamped, 667u);
  EXPECT_EQ(report.non_finite.dropped, 0u);
  EXPECT_EQ(report.file_bytes, std::filesystem::file_size(path));
  ASSERT_TRUE(cloud->Validate().ok());
  for (const auto* v :
       {&cloud->positions, &cloud->log_scales, &cloud->rotations, &cloud->opacity_logits, &cloud->sh_dc}) {
    for (float x : *v) ASSERT_TRUE(std::isfinite(x));
  }

  // Raw: exactly 667 logits are infinite, nothing else is.
  absl::StatusOr<GaussianCloud> raw = ReadGaussianPly(path, Raw(), &report);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(
      std::count_if(raw->opacity_logits.begin(), raw->opacity_logits.end(), [](float x) { return std::isinf(x); }),
      667);
  EXPECT_EQ(report.non_finite.opacity_clamped, 667u);
}

TEST(PlyRealSceneTest, GuitarParsesFast) {
  FLEXGS_REQUIRE_DATA(path, "guitar.ply");
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  ASSERT_TRUE(bytes.ok());
  double best_ms = 1e9;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<GaussianCloud> cloud = ParseGaussianPly(*bytes);
    best_ms =
        std::min(best_ms, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    ASSERT_TRUE(cloud.ok());
  }
  RecordProperty("parse_ms", std::to_string(best_ms));
  std::printf("guitar.ply (90,854 Gaussians) parsed in %.2f ms (best of 5)\n", best_ms);
  // Generous bound so sanitizer/debug builds pass; release builds take a few ms.
  EXPECT_LT(best_ms, 1000.0);
}

TEST(PlyRealSceneTest, Sh3SceneLoads) {
  FLEXGS_REQUIRE_DATA(path, "sh3-9k.ply");
  PlyReadReport report;
  absl::StatusOr<GaussianCloud> cloud = ReadGaussianPly(path, {}, &report);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  EXPECT_EQ(cloud->size(), 9'080u);
  EXPECT_EQ(cloud->sh_degree, 3);
  EXPECT_TRUE(report.had_normals);
  EXPECT_TRUE(cloud->Validate().ok());
  // The file is in the exact layout we write, so re-serializing reproduces it byte for byte.
  absl::StatusOr<std::string> original = ReadFileToString(path);
  ASSERT_TRUE(original.ok());
  EXPECT_EQ(report.non_finite.total(), 0u);
  EXPECT_TRUE(SerializeGaussianPly(*cloud) == *original);
}

TEST(PlyRealSceneTest, GuitarWrittenBackIsInriaLayoutAndIdentical) {
  FLEXGS_REQUIRE_DATA(path, "guitar.ply");
  absl::StatusOr<GaussianCloud> cloud = ReadGaussianPly(path, Raw());
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  const std::string out = (testing::ScratchDir() / "guitar-inria.ply").string();
  ASSERT_TRUE(WriteGaussianPly(out, *cloud).ok());
  absl::StatusOr<std::string> text = ReadFileToString(out);
  ASSERT_TRUE(text.ok());
  EXPECT_THAT(*text, StartsWith("ply\nformat binary_little_endian 1.0\nelement vertex 90854\n"
                                "property float x\nproperty float y\nproperty float z\n"
                                "property float nx\nproperty float ny\nproperty float nz\n"
                                "property float f_dc_0\nproperty float f_dc_1\nproperty float f_dc_2\n"
                                "property float opacity\nproperty float scale_0\nproperty float scale_1\n"
                                "property float scale_2\nproperty float rot_0\nproperty float rot_1\n"
                                "property float rot_2\nproperty float rot_3\nend_header\n"));
  PlyReadReport report;
  absl::StatusOr<GaussianCloud> back = ReadGaussianPly(out, Raw(), &report);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(report.had_normals);
  ExpectBitwiseEqual(*cloud, *back);
}

// ---------------------------------------------------------------------------
// file_io.

TEST(FileIoTest, AtomicWriteReplacesAndLeavesNoTemporaries) {
  const auto dir = testing::ScratchDir();
  const std::string path = (dir / "f.bin").string();
  ASSERT_TRUE(WriteFileAtomically(path, "first version").ok());
  ASSERT_TRUE(WriteFileAtomically(path, std::string("second\0version", 14)).ok());
  absl::StatusOr<std::string> got = ReadFileToString(path);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, std::string("second\0version", 14));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()), 1);
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::others_read);
}

TEST(FileIoTest, WriteErrorsLeaveNothingBehind) {
  const auto dir = testing::ScratchDir();
  EXPECT_FALSE(WriteFileAtomically((dir / "no-such-dir" / "f").string(), "x").ok());
  const absl::Status st = WriteFileAtomically(dir.string(), "x");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("directory"));
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(FileIoTest, ReadErrorsAreSpecific) {
  const auto dir = testing::ScratchDir();
  const std::string path = (dir / "f").string();
  ASSERT_TRUE(WriteFileAtomically(path, std::string(100, 'a')).ok());
  ExpectError(ReadFileToString(path, 99), absl::StatusCode::kResourceExhausted, "too large");
  EXPECT_EQ(ReadFileToString(path, 100)->size(), 100u);
  ExpectError(ReadFileToString((dir / "missing").string()), absl::StatusCode::kNotFound, "no such file");
  ExpectError(ReadFileToString(dir.string()), absl::StatusCode::kInvalidArgument, "is a directory");
}

}  // namespace
}  // namespace flexgs
