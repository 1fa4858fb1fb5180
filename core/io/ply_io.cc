#include "io/ply_io.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file_io.h"
#include "base/status_macros.h"
#include "io/compressed_ply.h"
#include "spdlog/spdlog.h"

namespace flexgs {
namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr bool kHostLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

// This absl build has its own string_view type; convert at the absl call sites.
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }
std::string_view Std(absl::string_view s) { return std::string_view(s.data(), s.size()); }

// ---------------------------------------------------------------------------
// Header parsing.

bool ParseScalarType(std::string_view name, PlyScalarType* type) {
  static constexpr std::pair<std::string_view, PlyScalarType> kNames[] = {
      {"char", PlyScalarType::kInt8},       {"int8", PlyScalarType::kInt8},       {"uchar", PlyScalarType::kUint8},
      {"uint8", PlyScalarType::kUint8},     {"short", PlyScalarType::kInt16},     {"int16", PlyScalarType::kInt16},
      {"ushort", PlyScalarType::kUint16},   {"uint16", PlyScalarType::kUint16},   {"int", PlyScalarType::kInt32},
      {"int32", PlyScalarType::kInt32},     {"uint", PlyScalarType::kUint32},     {"uint32", PlyScalarType::kUint32},
      {"float", PlyScalarType::kFloat32},   {"float32", PlyScalarType::kFloat32}, {"double", PlyScalarType::kFloat64},
      {"float64", PlyScalarType::kFloat64},
  };
  for (const auto& [n, t] : kNames) {
    if (n == name) {
      *type = t;
      return true;
    }
  }
  return false;
}

const char* EncodingName(PlyEncoding encoding) {
  switch (encoding) {
    case PlyEncoding::kAscii:
      return "ascii";
    case PlyEncoding::kBinaryLittleEndian:
      return "binary_little_endian";
    case PlyEncoding::kBinaryBigEndian:
      return "binary_big_endian";
  }
  return "?";
}

// A header line quoted for an error message: bounded and with binary bytes escaped.
std::string Quote(std::string_view line) {
  constexpr size_t kMax = 80;
  std::string out = absl::StrCat("'", absl::CHexEscape(Absl(line.substr(0, kMax))), "'");
  if (line.size() > kMax) out += "...";
  return out;
}

// ---------------------------------------------------------------------------
// Vertex schema: which GaussianCloud slot each vertex property feeds.

enum class Attr { kPosition, kNormal, kShDc, kOpacity, kLogScale, kRotation, kShRest };

struct KnownProperty {
  std::string_view name;
  Attr attr;
  int slot;
};

// The required properties, then the optional normals. f_rest_* are handled apart.
constexpr KnownProperty kKnownProperties[] = {
    {"x", Attr::kPosition, 0},       {"y", Attr::kPosition, 1},       {"z", Attr::kPosition, 2},
    {"f_dc_0", Attr::kShDc, 0},      {"f_dc_1", Attr::kShDc, 1},      {"f_dc_2", Attr::kShDc, 2},
    {"opacity", Attr::kOpacity, 0},  {"scale_0", Attr::kLogScale, 0}, {"scale_1", Attr::kLogScale, 1},
    {"scale_2", Attr::kLogScale, 2}, {"rot_0", Attr::kRotation, 0},   {"rot_1", Attr::kRotation, 1},
    {"rot_2", Attr::kRotation, 2},   {"rot_3", Attr::kRotation, 3},   {"nx", Attr::kNormal, 0},
    {"ny", Attr::kNormal, 1},        {"nz", Attr::kNormal, 2},
};
constexpr int kNumRequired = 14;

struct FieldSource {
  int property;  // index into the vertex element's properties
  Attr attr;
  int slot;  // component within the attribute (f_rest: the f_rest index)
};

struct VertexSchema {
  std::vector<FieldSource> fields;  // every property stored in the cloud
  int sh_degree = 0;
  bool had_normals = false;
  std::vector<std::string> ignored;
};

// Returns the f_rest index in `name` ("f_rest_12" -> 12), -1 if it is not an f_rest
// name, or -2 if it starts like one but the suffix is not a plain number.
int FRestIndex(std::string_view name) {
  constexpr std::string_view kPrefix = "f_rest_";
  if (name.substr(0, kPrefix.size()) != kPrefix) return -1;
  const std::string_view digits = name.substr(kPrefix.size());
  if (digits.empty() || digits.size() > 4 || (digits.size() > 1 && digits[0] == '0')) return -2;
  int index = 0;
  for (char ch : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(ch))) return -2;
    index = index * 10 + (ch - '0');
  }
  return index;
}

absl::StatusOr<VertexSchema> BuildVertexSchema(const PlyElement& vertex) {
  VertexSchema schema;
  std::array<bool, std::size(kKnownProperties)> seen{};
  std::vector<int> rest_indices;
  for (int p = 0; p < static_cast<int>(vertex.properties.size()); ++p) {
    const PlyProperty& prop = vertex.properties[p];
    if (prop.is_list) {
      return absl::InvalidArgumentError(
          absl::StrCat("vertex property '", prop.name, "' is a list; lists are not supported in the vertex element"));
    }
    bool known = false;
    for (size_t k = 0; k < std::size(kKnownProperties); ++k) {
      if (kKnownProperties[k].name != prop.name) continue;
      // ParsePlyHeader already rejects duplicate names, so `seen` cannot repeat.
      seen[k] = true;
      known = true;
      if (kKnownProperties[k].attr == Attr::kNormal) {
        schema.had_normals = true;
      } else {
        schema.fields.push_back({p, kKnownProperties[k].attr, kKnownProperties[k].slot});
      }
    }
    if (known) continue;
    const int rest = FRestIndex(prop.name);
    if (rest == -2) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed SH property name '", prop.name, "' (expected f_rest_<index>)"));
    }
    if (rest >= 0) {
      rest_indices.push_back(rest);
      schema.fields.push_back({p, Attr::kShRest, rest});
      continue;
    }
    schema.ignored.push_back(prop.name);
  }

  std::vector<std::string> missing;
  for (int k = 0; k < kNumRequired; ++k) {
    if (!seen[k]) missing.emplace_back(kKnownProperties[k].name);
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("missing required vertex propert",
                                                   missing.size() == 1 ? "y " : "ies ", absl::StrJoin(missing, ", ")));
  }

  const int num_rest = static_cast<int>(rest_indices.size());
  schema.sh_degree = -1;
  for (int d = 0; d <= kMaxShDegree; ++d) {
    if (3 * ShRestCoeffs(d) == num_rest) schema.sh_degree = d;
  }
  if (schema.sh_degree < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad f_rest count: ", num_rest, " f_rest_* properties; expected 0, 9, 24 or 45 (SH degree 0, 1, 2 or 3)"));
  }
  for (int index : rest_indices) {
    if (index >= num_rest) {
      return absl::InvalidArgumentError(absl::StrCat("f_rest properties must be numbered f_rest_0..f_rest_",
                                                     num_rest - 1, " but f_rest_", index, " is present"));
    }
  }
  return schema;
}

// Where a field's values go in the cloud: element i is written to dst[i * stride].
struct FieldTarget {
  uint64_t src_offset;  // binary: byte offset within the row; ASCII: token index
  PlyScalarType type;
  float* dst;
  size_t stride;
};

std::vector<FieldTarget> BindTargets(const VertexSchema& schema, const PlyElement& vertex, bool binary,
                                     GaussianCloud& cloud) {
  const size_t rest_stride = 3 * static_cast<size_t>(cloud.rest_coeffs());
  std::vector<FieldTarget> targets;
  targets.reserve(schema.fields.size());
  for (const FieldSource& f : schema.fields) {
    float* base = nullptr;
    size_t stride = 0;
    switch (f.attr) {
      case Attr::kPosition:
        base = cloud.positions.data(), stride = 3;
        break;
      case Attr::kShDc:
        base = cloud.sh_dc.data(), stride = 3;
        break;
      case Attr::kOpacity:
        base = cloud.opacity_logits.data(), stride = 1;
        break;
      case Attr::kLogScale:
        base = cloud.log_scales.data(), stride = 3;
        break;
      case Attr::kRotation:
        base = cloud.rotations.data(), stride = 4;
        break;
      case Attr::kShRest:
        base = cloud.sh_rest.data(), stride = rest_stride;
        break;
      case Attr::kNormal:
        continue;  // never in schema.fields
    }
    const uint64_t src = binary ? vertex.PropertyOffset(f.property) : static_cast<uint64_t>(f.property);
    targets.push_back({src, vertex.properties[f.property].type, base + f.slot, stride});
  }
  return targets;
}

// ---------------------------------------------------------------------------
// Binary vertex data.

// double (or long double) -> float without the undefined behaviour of casting
// out-of-range values.
float NarrowToFloat(long double d) {
  constexpr long double kMax = std::numeric_limits<float>::max();
  if (d > kMax) return std::numeric_limits<float>::infinity();
  if (d < -kMax) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(d);
}

template <typename T>
T LoadScalar(const char* p, bool swap) {
  char buf[sizeof(T)];
  std::memcpy(buf, p, sizeof(T));
  if (swap) std::reverse(buf, buf + sizeof(T));
  T value;
  std::memcpy(&value, buf, sizeof(T));
  return value;
}

float LoadAsFloat(const char* p, PlyScalarType type, bool swap) {
  switch (type) {
    case PlyScalarType::kInt8:
      return static_cast<float>(LoadScalar<int8_t>(p, swap));
    case PlyScalarType::kUint8:
      return static_cast<float>(LoadScalar<uint8_t>(p, swap));
    case PlyScalarType::kInt16:
      return static_cast<float>(LoadScalar<int16_t>(p, swap));
    case PlyScalarType::kUint16:
      return static_cast<float>(LoadScalar<uint16_t>(p, swap));
    case PlyScalarType::kInt32:
      return static_cast<float>(LoadScalar<int32_t>(p, swap));
    case PlyScalarType::kUint32:
      return static_cast<float>(LoadScalar<uint32_t>(p, swap));
    case PlyScalarType::kFloat32:
      return LoadScalar<float>(p, swap);
    case PlyScalarType::kFloat64:
      return NarrowToFloat(LoadScalar<double>(p, swap));
  }
  return 0.0f;
}

void DecodeBinaryVertices(std::string_view data, uint64_t row_bytes, bool swap, const std::vector<FieldTarget>& targets,
                          size_t n) {
  const bool all_native_float = !swap && std::all_of(targets.begin(), targets.end(), [](const FieldTarget& t) {
    return t.type == PlyScalarType::kFloat32;
  });
  const char* row = data.data();
  if (all_native_float) {
    // Fast path (every real 3DGS file): plain 4-byte copies, no per-value dispatch.
    for (size_t i = 0; i < n; ++i, row += row_bytes) {
      for (const FieldTarget& t : targets) std::memcpy(t.dst + i * t.stride, row + t.src_offset, 4);
    }
    return;
  }
  for (size_t i = 0; i < n; ++i, row += row_bytes) {
    for (const FieldTarget& t : targets) t.dst[i * t.stride] = LoadAsFloat(row + t.src_offset, t.type, swap);
  }
}

// ---------------------------------------------------------------------------
// ASCII data.

// Walks the data section line by line, skipping blank lines.
class LineReader {
 public:
  LineReader(std::string_view data, uint64_t first_line_number) : data_(data), line_number_(first_line_number - 1) {}

  // Next non-blank line (without '\r\n'), or false at the end of the data.
  bool Next(std::string_view* line) {
    while (pos_ < data_.size()) {
      const size_t nl = data_.find('\n', pos_);
      const size_t end = nl == std::string_view::npos ? data_.size() : nl;
      std::string_view l = data_.substr(pos_, end - pos_);
      pos_ = nl == std::string_view::npos ? data_.size() : nl + 1;
      ++line_number_;
      l = Std(absl::StripAsciiWhitespace(Absl(l)));
      if (!l.empty()) {
        *line = l;
        return true;
      }
    }
    return false;
  }
  uint64_t line_number() const { return line_number_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  uint64_t line_number_;
};

// Parses a whole token as a float; accepts an optional sign, inf and nan.
bool ParseFloatToken(std::string_view token, float* value) {
  if (!token.empty() && token[0] == '+') token.remove_prefix(1);
  const char* end = token.data() + token.size();
  const auto result = std::from_chars(token.data(), end, *value);
  if (result.ec == std::errc::result_out_of_range) {
    // Finite decimals beyond float's range: saturate like a double->float cast.
    // Parsed as long double, since beyond double's range from_chars leaves the value
    // untouched (so 1e400 used to read as 0); beyond even that it is rejected.
    long double d = 0;
    const auto wide = std::from_chars(token.data(), end, d);
    if (wide.ptr != end || wide.ec != std::errc()) return false;
    *value = NarrowToFloat(d);
    return true;
  }
  return result.ec == std::errc() && result.ptr == end;
}

void SplitTokens(std::string_view line, std::vector<std::string_view>* tokens) {
  tokens->clear();
  for (absl::string_view t : absl::StrSplit(Absl(line), absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
    tokens->push_back(Std(t));
  }
}

absl::Status DecodeAsciiData(std::string_view bytes, const PlyHeader& header, const PlyElement& vertex,
                             const std::vector<FieldTarget>& targets) {
  const std::string_view data = bytes.substr(header.data_offset);
  const uint64_t header_lines =
      static_cast<uint64_t>(std::count(bytes.begin(), bytes.begin() + header.data_offset, '\n'));
  LineReader lines(data, header_lines + 1);
  std::vector<std::string_view> tokens;
  std::string_view line;
  for (const PlyElement& element : header.elements) {
    const bool is_vertex = &element == &vertex;
    for (uint64_t row = 0; row < element.count; ++row) {
      if (!lines.Next(&line)) {
        return absl::DataLossError(absl::StrCat("truncated: expected ", element.count, " '", element.name,
                                                "' rows of ASCII data, found ", row));
      }
      if (!is_vertex) continue;  // one row per line; other elements are skipped
      SplitTokens(line, &tokens);
      if (tokens.size() != vertex.properties.size()) {
        return absl::InvalidArgumentError(absl::StrCat("ASCII vertex ", row, " (line ", lines.line_number(),
                                                       "): expected ", vertex.properties.size(), " values, found ",
                                                       tokens.size()));
      }
      for (size_t p = 0; p < tokens.size(); ++p) {
        float value;
        if (!ParseFloatToken(tokens[p], &value)) {
          return absl::InvalidArgumentError(absl::StrCat("ASCII vertex ", row, " (line ", lines.line_number(),
                                                         "): non-numeric value ", Quote(tokens[p]), " for property '",
                                                         vertex.properties[p].name, "'"));
        }
      }
      for (const FieldTarget& t : targets) {
        ParseFloatToken(tokens[t.src_offset], &t.dst[row * t.stride]);
      }
    }
  }
  if (lines.Next(&line)) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected data after the declared ", vertex.count,
                                                   " vertices at line ", lines.line_number(),
                                                   " (the header's element counts do not match the data)"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Non-finite bookkeeping.

// What SanitizeNonFinite would report, without modifying the cloud.
absl::StatusOr<GaussianCloud> DecodeUncompressed(std::string_view bytes, const PlyHeader& header,
                                                 const PlyElement& vertex, PlyReadReport& report) {
  FLEXGS_ASSIGN_OR_RETURN(VertexSchema schema, BuildVertexSchema(vertex));
  report.sh_degree = schema.sh_degree;
  report.had_normals = schema.had_normals;
  report.ignored_properties = schema.ignored;
  const size_t n = vertex.count;

  GaussianCloud cloud;
  cloud.sh_degree = schema.sh_degree;
  if (header.encoding == PlyEncoding::kAscii) {
    // Each value takes at least two bytes ("0 ", the file's last one "0"): bound the
    // count by the data size before allocating, so a lying header cannot make us
    // allocate gigabytes.
    const uint64_t available = bytes.size() - header.data_offset;
    const uint64_t min_row_bytes = 2 * vertex.properties.size();
    if (vertex.count > (available + 1) / min_row_bytes) {
      return absl::DataLossError(absl::StrCat("truncated: expected ", vertex.count, " ASCII vertices, but only ",
                                              available, " bytes of data follow the header"));
    }
    cloud.Resize(n);
    FLEXGS_RETURN_IF_ERROR(DecodeAsciiData(bytes, header, vertex, BindTargets(schema, vertex, false, cloud)));
    return cloud;
  }

  FLEXGS_ASSIGN_OR_RETURN(std::vector<std::string_view> spans, SplitBinaryElements(header, bytes));
  const std::string_view vertex_data = spans[&vertex - header.elements.data()];
  cloud.Resize(n);
  const bool swap = (header.encoding == PlyEncoding::kBinaryLittleEndian) != kHostLittleEndian;
  DecodeBinaryVertices(vertex_data, vertex.RowBytes(), swap, BindTargets(schema, vertex, true, cloud), n);
  return cloud;
}

absl::StatusOr<GaussianCloud> ParseImpl(std::string_view bytes, const PlyReadOptions& options,
                                        PlyReadReport* report_out, std::string_view source) {
  PlyReadReport report;
  report.file_bytes = bytes.size();
  FLEXGS_ASSIGN_OR_RETURN(PlyHeader header, ParsePlyHeader(bytes));
  report.format = EncodingName(header.encoding);
  const PlyElement* vertex = header.FindElement("vertex");
  if (vertex == nullptr) return absl::InvalidArgumentError("PLY has no 'vertex' element");
  if (vertex->count == 0) return absl::InvalidArgumentError("PLY has zero vertices (element vertex 0)");
  if (vertex->count > options.max_vertices) {
    return absl::InvalidArgumentError(
        absl::StrCat("vertex count ", vertex->count, " exceeds the limit of ", options.max_vertices));
  }
  report.vertices = vertex->count;

  GaussianCloud cloud;
  if (IsCompressedPly(header)) {
    FLEXGS_ASSIGN_OR_RETURN(cloud, DecodeCompressedPly(header, bytes));
    report.format = "compressed";
    report.sh_degree = cloud.sh_degree;
  } else {
    FLEXGS_ASSIGN_OR_RETURN(cloud, DecodeUncompressed(bytes, header, *vertex, report));
    for (const PlyElement& e : header.elements) {
      if (&e != vertex) spdlog::debug("{}: skipped PLY element '{}' ({} rows)", source, e.name, e.count);
    }
  }
  if (!report.ignored_properties.empty()) {
    spdlog::warn("{}: ignoring {} unknown vertex properties: {}", source, report.ignored_properties.size(),
                 absl::StrJoin(report.ignored_properties, ", "));
  }

  if (options.sanitize) {
    report.non_finite = SanitizeNonFinite(cloud);
    if (report.non_finite.total() > 0) {
      spdlog::warn("{}: clamped {} infinite opacity logits to +-{} and dropped {} Gaussians with NaN/inf values",
                   source, report.non_finite.opacity_clamped, kOpacityLogitLimit, report.non_finite.dropped);
    }
  } else {
    report.non_finite = CountNonFinite(cloud);
  }
  if (report_out != nullptr) *report_out = std::move(report);
  return cloud;
}

// ---------------------------------------------------------------------------
// Writing.

std::string InriaHeader(const GaussianCloud& cloud, PlyFormat format) {
  std::string h = "ply\n";
  absl::StrAppend(&h, "format ", format == PlyFormat::kAscii ? "ascii" : "binary_little_endian", " 1.0\n");
  absl::StrAppend(&h, "element vertex ", cloud.size(), "\n");
  for (const char* name : {"x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"}) {
    absl::StrAppend(&h, "property float ", name, "\n");
  }
  for (int i = 0; i < 3 * cloud.rest_coeffs(); ++i) absl::StrAppend(&h, "property float f_rest_", i, "\n");
  for (const char* name : {"opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"}) {
    absl::StrAppend(&h, "property float ", name, "\n");
  }
  h += "end_header\n";
  return h;
}

// Fills `row` with Gaussian i's values in INRIA property order.
void InriaRow(const GaussianCloud& c, size_t i, std::vector<float>& row) {
  const size_t k3 = 3 * static_cast<size_t>(c.rest_coeffs());
  row.clear();
  row.insert(row.end(), &c.positions[3 * i], &c.positions[3 * i] + 3);
  row.insert(row.end(), {0.0f, 0.0f, 0.0f});
  row.insert(row.end(), &c.sh_dc[3 * i], &c.sh_dc[3 * i] + 3);
  row.insert(row.end(), c.sh_rest.data() + k3 * i, c.sh_rest.data() + k3 * (i + 1));
  row.push_back(c.opacity_logits[i]);
  row.insert(row.end(), &c.log_scales[3 * i], &c.log_scales[3 * i] + 3);
  row.insert(row.end(), &c.rotations[4 * i], &c.rotations[4 * i] + 4);
}

}  // namespace

// ---------------------------------------------------------------------------
// Header model.

int PlyScalarSize(PlyScalarType type) {
  switch (type) {
    case PlyScalarType::kInt8:
    case PlyScalarType::kUint8:
      return 1;
    case PlyScalarType::kInt16:
    case PlyScalarType::kUint16:
      return 2;
    case PlyScalarType::kInt32:
    case PlyScalarType::kUint32:
    case PlyScalarType::kFloat32:
      return 4;
    case PlyScalarType::kFloat64:
      return 8;
  }
  return 0;
}

int PlyElement::FindProperty(std::string_view prop_name) const {
  for (size_t i = 0; i < properties.size(); ++i) {
    if (properties[i].name == prop_name) return static_cast<int>(i);
  }
  return -1;
}

bool PlyElement::HasListProperty() const {
  return std::any_of(properties.begin(), properties.end(), [](const PlyProperty& p) { return p.is_list; });
}

uint64_t PlyElement::RowBytes() const { return PropertyOffset(static_cast<int>(properties.size())); }

uint64_t PlyElement::PropertyOffset(int index) const {
  uint64_t offset = 0;
  for (int i = 0; i < index; ++i) offset += PlyScalarSize(properties[i].type);
  return offset;
}

const PlyElement* PlyHeader::FindElement(std::string_view element_name) const {
  for (const PlyElement& e : elements) {
    if (e.name == element_name) return &e;
  }
  return nullptr;
}

absl::StatusOr<PlyHeader> ParsePlyHeader(std::string_view bytes) {
  if (bytes.empty()) return absl::InvalidArgumentError("not a PLY file: the file is empty");
  if (bytes.substr(0, 4) != "ply\n" && bytes.substr(0, 5) != "ply\r\n") {
    return absl::InvalidArgumentError("not a PLY file: it does not start with the 'ply' magic line");
  }
  // Only the first 64 KiB can hold the header: real ones are ~1.5 KB, and the cap
  // keeps a binary blob that happens to start with "ply" from being scanned whole.
  const std::string_view window = bytes.substr(0, kMaxHeaderBytes);
  PlyHeader header;
  bool have_format = false;
  size_t pos = 0;
  int line_number = 0;
  std::vector<std::string_view> tokens;
  while (true) {
    if (pos >= window.size()) {
      if (bytes.size() > window.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("PLY header too long: no end_header in the first ", kMaxHeaderBytes, " bytes"));
      }
      return absl::InvalidArgumentError("PLY header has no end_header line");
    }
    const size_t nl = window.find('\n', pos);
    if (nl == std::string_view::npos && bytes.size() > window.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("PLY header too long: no end_header in the first ", kMaxHeaderBytes, " bytes"));
    }
    const size_t end = nl == std::string_view::npos ? window.size() : nl;
    std::string_view line = window.substr(pos, end - pos);
    pos = nl == std::string_view::npos ? window.size() : nl + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_number == 1) continue;  // the magic, checked above
    if (nl == std::string_view::npos && absl::StripAsciiWhitespace(Absl(line)) != "end_header") {
      return absl::InvalidArgumentError("PLY header has no end_header line (the file ends inside the header)");
    }

    SplitTokens(line, &tokens);
    if (tokens.empty()) continue;
    const std::string_view keyword = tokens[0];
    auto bad_line = [&](const char* why) {
      return absl::InvalidArgumentError(absl::StrCat("bad PLY header line ", line_number, " ", Quote(line), ": ", why));
    };

    if (keyword == "comment" || keyword == "obj_info") continue;
    if (keyword == "end_header") {
      if (tokens.size() != 1) return bad_line("unexpected text after end_header");
      header.data_offset = pos;
      break;
    }
    if (keyword == "format") {
      if (have_format) return bad_line("duplicate format line");
      if (tokens.size() != 3) return bad_line("expected 'format <encoding> 1.0'");
      if (tokens[1] == "ascii") {
        header.encoding = PlyEncoding::kAscii;
      } else if (tokens[1] == "binary_little_endian") {
        header.encoding = PlyEncoding::kBinaryLittleEndian;
      } else if (tokens[1] == "binary_big_endian") {
        header.encoding = PlyEncoding::kBinaryBigEndian;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported PLY format '", absl::CHexEscape(Absl(tokens[1])),
                         "' (expected ascii, binary_little_endian or binary_big_endian)"));
      }
      if (tokens[2] != "1.0" && tokens[2] != "1") {
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported PLY version '", absl::CHexEscape(Absl(tokens[2])), "' (expected 1.0)"));
      }
      have_format = true;
      continue;
    }
    if (keyword == "element") {
      if (tokens.size() != 3) return bad_line("expected 'element <name> <count>'");
      PlyElement element;
      element.name = std::string(tokens[1]);
      if (!absl::SimpleAtoi(Absl(tokens[2]), &element.count) || tokens[2][0] == '-' || tokens[2][0] == '+') {
        return bad_line("element count is not a non-negative integer");
      }
      if (header.FindElement(element.name) != nullptr) return bad_line("duplicate element name");
      header.elements.push_back(std::move(element));
      continue;
    }
    if (keyword == "property") {
      if (header.elements.empty()) return bad_line("property before any element");
      PlyProperty prop;
      if (tokens.size() == 5 && tokens[1] == "list") {
        prop.is_list = true;
        if (!ParseScalarType(tokens[2], &prop.list_count_type) || !ParseScalarType(tokens[3], &prop.type)) {
          return bad_line("unknown list property type");
        }
        if (prop.list_count_type == PlyScalarType::kFloat32 || prop.list_count_type == PlyScalarType::kFloat64) {
          return bad_line("list count type must be an integer type");
        }
      } else if (tokens.size() == 3) {
        if (!ParseScalarType(tokens[1], &prop.type)) return bad_line("unknown property type");
      } else {
        return bad_line("expected 'property <type> <name>' or 'property list <type> <type> <name>'");
      }
      prop.name = std::string(tokens.back());
      PlyElement& element = header.elements.back();
      if (element.FindProperty(prop.name) >= 0) return bad_line("duplicate property name");
      element.properties.push_back(std::move(prop));
      continue;
    }
    return bad_line("unknown keyword");
  }
  if (!have_format) return absl::InvalidArgumentError("PLY header has no format line");
  return header;
}

absl::StatusOr<std::vector<std::string_view>> SplitBinaryElements(const PlyHeader& header, std::string_view bytes) {
  if (header.encoding == PlyEncoding::kAscii) {
    return absl::InvalidArgumentError("SplitBinaryElements called on an ASCII PLY");
  }
  std::vector<std::string_view> spans;
  uint64_t offset = std::min<uint64_t>(header.data_offset, bytes.size());
  for (const PlyElement& element : header.elements) {
    if (element.count == 0) {
      spans.push_back(bytes.substr(offset, 0));
      continue;
    }
    for (const PlyProperty& p : element.properties) {
      if (p.is_list) {
        return absl::InvalidArgumentError(absl::StrCat("unsupported: element '", element.name, "' has list property '",
                                                       p.name,
                                                       "'; list properties are not supported in binary PLY files"));
      }
    }
    const uint64_t row = element.RowBytes();
    const uint64_t available = bytes.size() - offset;
    // Compare by division: count * row can overflow for a hostile count.
    if (row > 0 && element.count > available / row) {
      if (element.count > std::numeric_limits<uint64_t>::max() / row) {
        return absl::DataLossError(absl::StrCat("truncated: element '", element.name, "' declares ", element.count,
                                                " rows of ", row, " bytes, but only ", available, " bytes follow"));
      }
      return absl::DataLossError(absl::StrCat("truncated: expected ", element.count * row, " bytes of ", element.name,
                                              " data, found ", available));
    }
    spans.push_back(bytes.substr(offset, element.count * row));
    offset += element.count * row;
  }
  if (offset != bytes.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(bytes.size() - offset,
                     " unexpected trailing bytes after the declared data (the header's element "
                     "counts do not match the data: count mismatch)"));
  }
  return spans;
}

// ---------------------------------------------------------------------------
// Public entry points.

absl::StatusOr<GaussianCloud> ParseGaussianPly(std::string_view bytes, const PlyReadOptions& options,
                                               PlyReadReport* report) {
  return ParseImpl(bytes, options, report, "PLY data");
}

absl::StatusOr<GaussianCloud> ReadGaussianPly(const std::string& path, const PlyReadOptions& options,
                                              PlyReadReport* report) {
  FLEXGS_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  absl::StatusOr<GaussianCloud> cloud = ParseImpl(bytes, options, report, path);
  if (!cloud.ok()) {
    return absl::Status(cloud.status().code(), absl::StrCat(path, ": ", cloud.status().message()));
  }
  return cloud;
}

std::string SerializeGaussianPly(const GaussianCloud& cloud, PlyFormat format) {
  if (absl::Status valid = cloud.Validate(); !valid.ok()) {
    spdlog::error("SerializeGaussianPly: invalid cloud: {}", std::string(valid.message()));
    return "";
  }
  std::string out = InriaHeader(cloud, format);
  std::vector<float> row;
  const size_t row_floats = 17 + 3 * static_cast<size_t>(cloud.rest_coeffs());
  row.reserve(row_floats);
  if (format == PlyFormat::kBinaryLittleEndian) {
    const size_t row_bytes = row_floats * sizeof(float);
    size_t at = out.size();
    out.resize(at + cloud.size() * row_bytes);
    for (size_t i = 0; i < cloud.size(); ++i, at += row_bytes) {
      InriaRow(cloud, i, row);
      std::memcpy(&out[at], row.data(), row_bytes);
      if constexpr (!kHostLittleEndian) {
        for (size_t b = 0; b < row_bytes; b += 4) std::reverse(&out[at + b], &out[at + b + 4]);
      }
    }
    return out;
  }
  // ASCII: the shortest decimal that parses back to the same float (to_chars), so
  // the round trip is exact like %.9g but the file is smaller.
  char buf[32];
  for (size_t i = 0; i < cloud.size(); ++i) {
    InriaRow(cloud, i, row);
    for (size_t v = 0; v < row.size(); ++v) {
      const auto result = std::to_chars(buf, buf + sizeof(buf), row[v]);
      out.append(buf, result.ptr);
      out.push_back(v + 1 == row.size() ? '\n' : ' ');
    }
  }
  return out;
}

absl::Status WriteGaussianPly(const std::string& path, const GaussianCloud& cloud, PlyFormat format) {
  if (absl::Status valid = cloud.Validate(); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot write an invalid cloud: ", valid.message()));
  }
  return WriteFileAtomically(path, SerializeGaussianPly(cloud, format));
}

}  // namespace flexgs
