#include "elastic/model_bundle.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "base/file_io.h"
#include "base/sha256.h"
#include "base/status_macros.h"
#include "elastic/elastic_selection.h"  // ElasticCount
#include "io/ply_io.h"
#include "io/safetensors.h"
#include "io/strict_json.h"
#include "nlohmann/json.hpp"

namespace flexgs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ShapeMap = std::map<std::string, std::vector<int64_t>>;

constexpr char kGiTensor[] = "gi";
// A manifest is a few KiB; the cap only keeps a wrong path from being slurped whole.
constexpr uint64_t kMaxManifestBytes = uint64_t{16} << 20;
// The manifest is ours and shallow (the training summary adds a little); the cap
// keeps recursive JSON serialisation of a hostile file off the stack's limits.
constexpr int kMaxManifestDepth = 32;
// Upper bounds on field_config values accepted from a manifest. Far above any real
// model; they keep every derived size well inside int and int64 arithmetic.
constexpr int64_t kMaxFieldChannels = 4096;
constexpr int64_t kMaxFieldResolution = 65536;
constexpr int64_t kMaxFieldLevels = 16;
constexpr int64_t kMaxFieldHidden = 65536;
constexpr double kMaxReplacementTolerance = 16.0;
constexpr int kMaxMergeRefinePasses = 8;     // codec steps; beyond, levels stop refining
constexpr double kMaxGiPriorWeight = 100.0;  // log-GI units; larger only freezes the ranking

// Returns `status` with `prefix: ` in front of its message, code unchanged.
absl::Status Prefixed(absl::string_view prefix, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, ": ", status.message()));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// ---------------------------------------------------------------------------
// Tensor names and shapes.

std::string LevelTensorName(size_t level, int plane) {
  return absl::StrCat("field.level", level, ".", kPlaneNames[plane]);
}

void AddLayerShape(ShapeMap& shapes, const std::string& prefix, int64_t in, int64_t out) {
  shapes[prefix + ".weight"] = {out, in};
  shapes[prefix + ".bias"] = {out};
}

int64_t SpatialResolution(const TransformFieldConfig& config, size_t level) {
  return static_cast<int64_t>(config.base_resolution) * config.multires[level];
}

// Refined rung k's attribute tensors: "refined.<k>.<attribute>".
std::string RefinedTensorName(size_t rung, const char* attribute) {
  return absl::StrCat("refined.", rung, ".", attribute);
}

int64_t ShRestFloats(int sh_degree) { return 3 * ((sh_degree + 1) * (sh_degree + 1) - 1); }

// Every tensor a bundle with this content must hold, with its exact shape. The
// config must have passed CheckFieldConfigBounds. `refined_sizes`: Gaussians held by
// each refined rung.
ShapeMap ExpectedShapes(int64_t gaussians, bool has_gsnet, const TransformFieldConfig* field,
                        const std::vector<int64_t>& refined_sizes, int sh_degree) {
  ShapeMap shapes;
  shapes[kGiTensor] = {gaussians};
  for (size_t k = 0; k < refined_sizes.size(); ++k) {
    const int64_t n = refined_sizes[k];
    shapes[RefinedTensorName(k, "position")] = {n, 3};
    shapes[RefinedTensorName(k, "log_scale")] = {n, 3};
    shapes[RefinedTensorName(k, "rotation")] = {n, 4};
    shapes[RefinedTensorName(k, "opacity")] = {n};
    shapes[RefinedTensorName(k, "f_dc")] = {n, 3};
    if (sh_degree > 0) shapes[RefinedTensorName(k, "f_rest")] = {n, ShRestFloats(sh_degree)};
  }
  if (has_gsnet) {
    constexpr int64_t kHidden = GsNetWeights::kHidden;
    for (int b = 0; b < 4; ++b) {
      const std::string branch = GsNetWeights::kBranchNames[b];
      AddLayerShape(shapes, "gsnet.fc1." + branch, GsNetWeights::kInputs[b], kHidden);
      AddLayerShape(shapes, "gsnet.fc2." + branch, kHidden, kHidden);
    }
    AddLayerShape(shapes, "gsnet.head", 4 * kHidden, 2);
  }
  if (field != nullptr) {
    for (size_t l = 0; l < field->multires.size(); ++l) {
      const int64_t res[4] = {SpatialResolution(*field, l), SpatialResolution(*field, l), SpatialResolution(*field, l),
                              field->ratio_resolution};
      for (int p = 0; p < 6; ++p) {
        shapes[LevelTensorName(l, p)] = {field->channels, res[kPlaneAxes[p][1]], res[kPlaneAxes[p][0]]};
      }
    }
    AddLayerShape(shapes, "field.trunk", field->feature_dim(), field->hidden);
    for (int h = 0; h < 3; ++h) {
      const std::string head = TransformFieldWeights::kHeadNames[h];
      AddLayerShape(shapes, "field." + head + ".fc1", field->hidden, field->hidden);
      AddLayerShape(shapes, "field." + head + ".fc2", field->hidden, TransformFieldWeights::kHeadOutputs[h]);
    }
  }
  return shapes;
}

// Bounds the config's values so ExpectedShapes' arithmetic cannot overflow, then
// applies the field's own validation.
absl::Status CheckFieldConfigBounds(const TransformFieldConfig& c) {
  auto in_range = [](int64_t v, int64_t hi) { return v >= 1 && v <= hi; };
  if (!in_range(c.channels, kMaxFieldChannels) || !in_range(c.hidden, kMaxFieldHidden) ||
      !in_range(c.base_resolution, kMaxFieldResolution) || !in_range(c.ratio_resolution, kMaxFieldResolution) ||
      !in_range(static_cast<int64_t>(c.multires.size()), kMaxFieldLevels)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "field_config out of range (channels ", c.channels, ", hidden ", c.hidden, ", base_resolution ",
        c.base_resolution, ", ratio_resolution ", c.ratio_resolution, ", ", c.multires.size(), " levels)"));
  }
  for (int m : c.multires) {
    if (m < 1 || static_cast<int64_t>(c.base_resolution) * m > kMaxFieldResolution) {
      return absl::InvalidArgumentError(absl::StrCat("field_config multires ", m, " out of range"));
    }
  }
  return c.Validate();
}

void PutLayer(TensorMap& tensors, const std::string& prefix, const DenseLayer& layer) {
  tensors[prefix + ".weight"] = Tensor{{layer.out, layer.in}, layer.weight};
  tensors[prefix + ".bias"] = Tensor{{layer.out}, layer.bias};
}

// The model's tensors with shapes taken from the model itself, so that comparing
// them against ExpectedShapes also proves the model matches its own config.
std::vector<int64_t> RefinedSizes(const ElasticModel& model) {
  std::vector<int64_t> sizes;
  for (const RefinedRung& r : model.refined_rungs) sizes.push_back(static_cast<int64_t>(r.held.size()));
  return sizes;
}

TensorMap ModelTensors(const ElasticModel& model) {
  TensorMap tensors;
  tensors[kGiTensor] = Tensor{{static_cast<int64_t>(model.global_importance.size())}, model.global_importance};
  for (size_t k = 0; k < model.refined_rungs.size(); ++k) {
    const GaussianCloud& c = model.refined_rungs[k].held;
    const int64_t n = static_cast<int64_t>(c.size());
    tensors[RefinedTensorName(k, "position")] = Tensor{{n, 3}, c.positions};
    tensors[RefinedTensorName(k, "log_scale")] = Tensor{{n, 3}, c.log_scales};
    tensors[RefinedTensorName(k, "rotation")] = Tensor{{n, 4}, c.rotations};
    tensors[RefinedTensorName(k, "opacity")] = Tensor{{n}, c.opacity_logits};
    tensors[RefinedTensorName(k, "f_dc")] = Tensor{{n, 3}, c.sh_dc};
    if (c.sh_degree > 0) tensors[RefinedTensorName(k, "f_rest")] = Tensor{{n, ShRestFloats(c.sh_degree)}, c.sh_rest};
  }
  if (model.gsnet) {
    for (int b = 0; b < 4; ++b) {
      const std::string branch = GsNetWeights::kBranchNames[b];
      PutLayer(tensors, "gsnet.fc1." + branch, model.gsnet->fc1[b]);
      PutLayer(tensors, "gsnet.fc2." + branch, model.gsnet->fc2[b]);
    }
    PutLayer(tensors, "gsnet.head", model.gsnet->head);
  }
  if (model.field) {
    const TransformFieldWeights& f = *model.field;
    for (size_t l = 0; l < f.levels.size(); ++l) {
      const HexPlaneLevel& level = f.levels[l];
      for (int p = 0; p < 6; ++p) {
        const int64_t res_a = level.Resolution(kPlaneAxes[p][0]);
        const int64_t res_b = level.Resolution(kPlaneAxes[p][1]);
        tensors[LevelTensorName(l, p)] = Tensor{{f.config.channels, res_b, res_a}, level.planes[p]};
      }
    }
    PutLayer(tensors, "field.trunk", f.trunk);
    for (int h = 0; h < 3; ++h) {
      const std::string head = TransformFieldWeights::kHeadNames[h];
      PutLayer(tensors, "field." + head + ".fc1", f.fc1[h]);
      PutLayer(tensors, "field." + head + ".fc2", f.fc2[h]);
    }
  }
  return tensors;
}

// Exact name set, exact shapes (and data sizes), finite values; GI non-negative.
// Checks run in a fixed order (missing, shape, unexpected, values) so a given
// corruption always yields the same message.
absl::Status CheckTensors(const TensorMap& tensors, const ShapeMap& expected) {
  for (const auto& [name, shape] : expected) {
    if (tensors.find(name) == tensors.end()) return absl::InvalidArgumentError("missing tensor " + name);
  }
  for (const auto& [name, shape] : expected) {
    const Tensor& t = tensors.at(name);
    if (t.shape != shape) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", name, " has shape ", ShapeString(t.shape), ", expected ", ShapeString(shape)));
    }
    if (static_cast<int64_t>(t.data.size()) != ShapeElementCount(shape)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " has ", t.data.size(), " values, shape ",
                                                     ShapeString(shape), " needs ", ShapeElementCount(shape)));
    }
  }
  for (const auto& [name, tensor] : tensors) {
    if (expected.find(name) == expected.end()) return absl::InvalidArgumentError("unexpected tensor " + name);
  }
  for (const auto& [name, tensor] : tensors) {
    for (size_t i = 0; i < tensor.data.size(); ++i) {
      const float v = tensor.data[i];
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor ", name, " has a non-finite value (", v, ") at index ", i));
      }
      if (name == kGiTensor && v < 0) {
        return absl::InvalidArgumentError(absl::StrCat("tensor gi has a negative value (", v, ") at index ", i));
      }
    }
  }
  return absl::OkStatus();
}

// Moves a verified layer out of `tensors`.
DenseLayer TakeLayer(TensorMap& tensors, const std::string& prefix) {
  Tensor& w = tensors.at(prefix + ".weight");
  DenseLayer layer;
  layer.out = static_cast<int>(w.shape[0]);
  layer.in = static_cast<int>(w.shape[1]);
  layer.weight = std::move(w.data);
  layer.bias = std::move(tensors.at(prefix + ".bias").data);
  return layer;
}

// ---------------------------------------------------------------------------
// Gaussians.

// A stored model must be renderable as is: the reader does not sanitise.
absl::Status CheckCloudFinite(const GaussianCloud& cloud) {
  const std::pair<const char*, const std::vector<float>*> arrays[] = {
      {"position", &cloud.positions},     {"log_scale", &cloud.log_scales}, {"rotation", &cloud.rotations},
      {"opacity", &cloud.opacity_logits}, {"f_dc", &cloud.sh_dc},           {"f_rest", &cloud.sh_rest}};
  for (const auto& [what, values] : arrays) {
    for (size_t i = 0; i < values->size(); ++i) {
      if (!std::isfinite((*values)[i])) {
        return absl::InvalidArgumentError(absl::StrCat("Gaussian attribute ", what, " has a non-finite value (",
                                                       (*values)[i], ") at index ", i,
                                                       "; a stored model must be finite"));
      }
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Manifest helpers. Errors carry no file prefix; callers add the manifest path.

absl::Status BadManifest(absl::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

absl::StatusOr<const json*> Member(const json& obj, const char* key, absl::string_view where) {
  const auto it = obj.find(key);
  if (it == obj.end()) return BadManifest(absl::StrCat("missing \"", where, key, "\""));
  return &*it;
}

// `obj` must be an object with exactly `keys`.
absl::Status CheckKeys(const json& obj, absl::Span<const char* const> keys, absl::string_view where) {
  if (!obj.is_object()) return BadManifest(absl::StrCat("\"", where, "\" is not an object"));
  const std::string dotted = where.empty() ? "" : absl::StrCat(where, ".");
  for (const char* key : keys) {
    if (obj.find(key) == obj.end()) return BadManifest(absl::StrCat("missing \"", dotted, key, "\""));
  }
  for (const auto& item : obj.items()) {
    bool known = false;
    for (const char* key : keys) known = known || item.key() == key;
    if (!known) return BadManifest(absl::StrCat("unknown key \"", dotted, item.key(), "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> GetInt(const json& obj, const char* key, int64_t lo, int64_t hi, absl::string_view where = "") {
  FLEXGS_ASSIGN_OR_RETURN(const json* v, Member(obj, key, where));
  int64_t value = 0;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      value = std::numeric_limits<int64_t>::max();
    else
      value = static_cast<int64_t>(u);
  } else if (v->is_number_integer()) {
    value = v->get<int64_t>();
  } else {
    return BadManifest(absl::StrCat("\"", where, key, "\" is not an integer"));
  }
  if (value < lo || value > hi) {
    return BadManifest(absl::StrCat("\"", where, key, "\" = ", value, " is outside [", lo, ", ", hi, "]"));
  }
  return value;
}

absl::StatusOr<float> AsFiniteFloat(const json& v, absl::string_view what) {
  if (!v.is_number()) return BadManifest(absl::StrCat("\"", what, "\" is not a number"));
  const double d = v.get<double>();
  const float f = static_cast<float>(d);
  if (!std::isfinite(d) || !std::isfinite(f)) return BadManifest(absl::StrCat("\"", what, "\" is not finite"));
  return f;
}

absl::StatusOr<std::string> GetString(const json& obj, const char* key, absl::string_view where = "") {
  FLEXGS_ASSIGN_OR_RETURN(const json* v, Member(obj, key, where));
  if (!v->is_string()) return BadManifest(absl::StrCat("\"", where, key, "\" is not a string"));
  return v->get<std::string>();
}

// The digest covers everything in the manifest except the digest itself.
absl::StatusOr<std::string> ManifestDigest(const json& manifest) {
  json content = manifest;
  content.erase("digest");
  try {
    return Sha256Hex(content.dump());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot serialise the manifest: ", e.what()));
  }
}

std::string ManifestPath(const std::string& dir) { return (fs::path(dir) / kBundleManifestFile).string(); }

// Parses manifest.json text and checks format, version and digest. Errors are
// prefixed with `path`.
absl::StatusOr<json> ParseManifest(std::string_view text, const std::string& path) {
  if (text.size() > kMaxManifestBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(path, ": ", text.size(), " bytes exceed the manifest limit of ", kMaxManifestBytes));
  }
  absl::StatusOr<json> parsed = ParseJsonStrict(text, kMaxManifestDepth);
  if (!parsed.ok()) return Prefixed(path, parsed.status());
  json& manifest = *parsed;
  if (!manifest.is_object()) return Prefixed(path, BadManifest("not a JSON object"));
  const auto format = manifest.find("format");
  if (format == manifest.end() || !format->is_string() || format->get_ref<const std::string&>() != kBundleFormatName) {
    return Prefixed(path, BadManifest(absl::StrCat("not a flexgs model bundle manifest (\"format\" is ",
                                                   format == manifest.end() ? "missing" : format->dump(),
                                                   ", expected \"", kBundleFormatName, "\")")));
  }
  // The version is checked before anything else so a newer bundle is reported as
  // such, not as a list of unknown keys.
  absl::StatusOr<int64_t> version = GetInt(manifest, "format_version", 1, std::numeric_limits<int64_t>::max());
  if (!version.ok()) return Prefixed(path, version.status());
  if (*version > kModelFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": format_version ", *version, " is newer than this build supports (", kModelFormatVersion, ")"));
  }
  const auto digest = manifest.find("digest");
  if (digest == manifest.end() || !digest->is_string() || !IsSha256Hex(digest->get_ref<const std::string&>())) {
    return Prefixed(path, BadManifest("\"digest\" is missing or not a lowercase hex SHA-256"));
  }
  absl::StatusOr<std::string> actual = ManifestDigest(manifest);
  if (!actual.ok()) return Prefixed(path, actual.status());
  if (*actual != digest->get_ref<const std::string&>()) {
    return absl::DataLossError(absl::StrCat(path, ": digest mismatch (manifest ", digest->get<std::string>(),
                                            ", content ", *actual, "); the manifest was edited or corrupted"));
  }
  return parsed;
}

// Reads manifest.json and checks format, version and digest. Errors are prefixed
// with the manifest's path.
absl::StatusOr<json> ReadManifest(const std::string& dir) {
  const std::string path = ManifestPath(dir);
  FLEXGS_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path, kMaxManifestBytes));
  return ParseManifest(text, path);
}

struct FileEntry {
  std::string sha256;
  int64_t bytes = 0;
};

// The manifest's "files" entry for `name`.
absl::StatusOr<FileEntry> ParseFileEntry(const json& files, const char* name) {
  FLEXGS_RETURN_IF_ERROR(CheckKeys(files, {kBundlePlyFile, kBundleTensorFile}, "files"));
  const json& entry = files.at(name);
  const std::string where = absl::StrCat("files.", name);
  FLEXGS_RETURN_IF_ERROR(CheckKeys(entry, {"sha256", "bytes"}, where));
  FileEntry out;
  FLEXGS_ASSIGN_OR_RETURN(out.sha256, GetString(entry, "sha256", where + "."));
  if (!IsSha256Hex(out.sha256)) {
    return BadManifest(absl::StrCat("\"", where, ".sha256\" is not a lowercase hex SHA-256"));
  }
  FLEXGS_ASSIGN_OR_RETURN(out.bytes,
                          GetInt(entry, "bytes", 0, static_cast<int64_t>(kDefaultMaxFileBytes), where + "."));
  return out;
}

// Reads a data file of the bundle and checks its size and hash against `entry`
// before anyone parses it. Errors start with the file's path.
absl::StatusOr<std::string> ReadVerifiedFile(const std::string& path, const FileEntry& entry) {
  absl::StatusOr<std::string> data = ReadFileToString(path, static_cast<uint64_t>(entry.bytes));
  if (absl::IsResourceExhausted(data.status())) {
    std::error_code ec;
    const uintmax_t actual = fs::file_size(path, ec);
    return absl::DataLossError(absl::StrCat(path, ": size mismatch (manifest ", entry.bytes, " bytes, file ",
                                            ec ? std::string("larger") : absl::StrCat(actual), " bytes)"));
  }
  if (!data.ok()) return data.status();
  if (data->size() != static_cast<uint64_t>(entry.bytes)) {
    return absl::DataLossError(
        absl::StrCat(path, ": size mismatch (manifest ", entry.bytes, " bytes, file ", data->size(), " bytes)"));
  }
  const std::string actual = Sha256Hex(*data);
  if (actual != entry.sha256) {
    return absl::DataLossError(
        absl::StrCat(path, ": SHA-256 mismatch (manifest ", entry.sha256, ", file ", actual, ")"));
  }
  return data;
}

json FieldConfigJson(const TransformFieldConfig& c) {
  return {{"channels", c.channels},
          {"base_resolution", c.base_resolution},
          {"multires", c.multires},
          {"ratio_resolution", c.ratio_resolution},
          {"hidden", c.hidden}};
}

absl::StatusOr<TransformFieldConfig> ParseFieldConfig(const json& j) {
  FLEXGS_RETURN_IF_ERROR(
      CheckKeys(j, {"channels", "base_resolution", "multires", "ratio_resolution", "hidden"}, "field_config"));
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  TransformFieldConfig c;
  FLEXGS_ASSIGN_OR_RETURN(c.channels, GetInt(j, "channels", 1, kIntMax, "field_config."));
  FLEXGS_ASSIGN_OR_RETURN(c.base_resolution, GetInt(j, "base_resolution", 1, kIntMax, "field_config."));
  FLEXGS_ASSIGN_OR_RETURN(c.ratio_resolution, GetInt(j, "ratio_resolution", 1, kIntMax, "field_config."));
  FLEXGS_ASSIGN_OR_RETURN(c.hidden, GetInt(j, "hidden", 1, kIntMax, "field_config."));
  const json& multires = j.at("multires");
  if (!multires.is_array() || multires.empty() || multires.size() > static_cast<size_t>(kMaxFieldLevels)) {
    return BadManifest(
        absl::StrCat("\"field_config.multires\" must be an array of 1 to ", kMaxFieldLevels, " integers"));
  }
  c.multires.clear();
  for (const json& m : multires) {
    if (!m.is_number_integer() || m.get<int64_t>() < 1 || m.get<int64_t>() > kMaxFieldResolution) {
      return BadManifest(absl::StrCat("\"field_config.multires\" entry ", m.dump(), " is not a positive integer"));
    }
    c.multires.push_back(static_cast<int>(m.get<int64_t>()));
  }
  FLEXGS_RETURN_IF_ERROR(CheckFieldConfigBounds(c));
  return c;
}

absl::Status ValidateLadder(const std::vector<double>& ladder) {
  if (ladder.empty()) return absl::InvalidArgumentError("ladder is empty");
  for (size_t i = 0; i < ladder.size(); ++i) {
    const double e = ladder[i];
    if (!std::isfinite(e) || e <= 0.0 || e > 1.0) {
      return absl::InvalidArgumentError(absl::StrCat("ladder[", i, "] = ", e, " is outside (0, 1]"));
    }
    if (i > 0 && e <= ladder[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("ladder is not strictly increasing (", ladder[i - 1], " then ", e, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateNormalization(const FieldNormalization& n) {
  for (int a = 0; a < 3; ++a) {
    if (!std::isfinite(n.aabb_min[a]) || !std::isfinite(n.aabb_max[a]) || !(n.aabb_min[a] < n.aabb_max[a])) {
      return absl::InvalidArgumentError(
          absl::StrCat("bounds axis ", a, " [", n.aabb_min[a], ", ", n.aabb_max[a], "] must be finite with min < max"));
    }
  }
  if (!std::isfinite(n.ratio_scale) || !std::isfinite(n.ratio_offset)) {
    return absl::InvalidArgumentError("ratio normalization must be finite");
  }
  return absl::OkStatus();
}

absl::Status ValidateProvenance(const GiProvenance& gi) {
  if (gi.variant.empty() || gi.variant.size() > 256) {
    return absl::InvalidArgumentError("GI variant must be a non-empty name of at most 256 characters");
  }
  if (gi.views < 0 || gi.width < 0 || gi.height < 0) {
    return absl::InvalidArgumentError("GI views, width and height must be non-negative");
  }
  return absl::OkStatus();
}

absl::StatusOr<json> ParseTrainingSummary(const std::string& text) {
  if (text.empty()) return json::object();
  absl::StatusOr<json> j = ParseJsonStrict(text, kMaxManifestDepth - 2);
  if (!j.ok()) return Prefixed("training summary", j.status());
  if (!j->is_object()) return absl::InvalidArgumentError("training summary is not a JSON object");
  return j;
}

// Refined rungs: only on merged levels; ascending ratios of the ladder below 1; more
// Gaussians each, at most the model's; the model's SH degree; finite attributes.
absl::Status ValidateRefinedRungs(const ElasticModel& model) {
  const std::vector<RefinedRung>& rungs = model.refined_rungs;
  if (rungs.empty()) return absl::OkStatus();
  if (!model.merged_levels) return absl::InvalidArgumentError("refined rungs need merged levels");
  if (rungs.size() > kMaxRefinedRungs) {
    return absl::InvalidArgumentError(absl::StrCat(rungs.size(), " refined rungs exceed ", kMaxRefinedRungs));
  }
  for (size_t k = 0; k < rungs.size(); ++k) {
    const RefinedRung& r = rungs[k];
    const std::string what = absl::StrCat("refined rung ", k, " (ratio ", r.ratio, ")");
    if (!(r.ratio > 0.0 && r.ratio < 1.0) ||
        std::find(model.ladder.begin(), model.ladder.end(), r.ratio) == model.ladder.end()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the ratio is not a rung of the ladder below 1"));
    }
    if (k > 0 && !(r.ratio > rungs[k - 1].ratio && r.held.size() > rungs[k - 1].held.size())) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ratios and sizes must increase"));
    }
    // A rung holds ElasticCount Gaussians; one that does not (stale, or edited) could
    // never be used by the planner.
    if (r.held.size() != ElasticCount(model.gaussians.size(), r.ratio) ||
        r.held.sh_degree != model.gaussians.sh_degree) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": holds ", r.held.size(), " Gaussians of SH degree ",
                                                     r.held.sh_degree, " for a model of ", model.gaussians.size(),
                                                     " of degree ", model.gaussians.sh_degree));
    }
    FLEXGS_RETURN_IF_ERROR(Prefixed(what, r.held.Validate()));
    FLEXGS_RETURN_IF_ERROR(Prefixed(what, CheckCloudFinite(r.held)));
  }
  return absl::OkStatus();
}

// Everything WriteModelBundle promises to check, before touching the disk.
absl::Status ValidateModel(const ElasticModel& model) {
  const GaussianCloud& cloud = model.gaussians;
  if (cloud.empty()) return absl::InvalidArgumentError("the model has no Gaussians");
  FLEXGS_RETURN_IF_ERROR(cloud.Validate());
  FLEXGS_RETURN_IF_ERROR(CheckCloudFinite(cloud));
  if (model.global_importance.size() != cloud.size()) {
    return absl::InvalidArgumentError(absl::StrCat("global importance has ", model.global_importance.size(),
                                                   " scores for ", cloud.size(), " Gaussians"));
  }
  if (model.gsnet) FLEXGS_RETURN_IF_ERROR(model.gsnet->Validate());
  if (!(model.gi_prior_weight >= 0.0 && model.gi_prior_weight <= kMaxGiPriorWeight)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gi_prior_weight ", model.gi_prior_weight, " is not in [0, ", kMaxGiPriorWeight, "]"));
  }
  if (model.gi_prior_weight != 0.0 && !model.gsnet) {
    return absl::InvalidArgumentError("gi_prior_weight is set but the model has no GsNet");
  }
  if (!(model.coverage_share >= 0.0 && model.coverage_share <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("coverage_share ", model.coverage_share, " is not in [0, 1]"));
  }
  if (model.gsnet_box_inputs && !model.gsnet) {
    return absl::InvalidArgumentError("gsnet_box_inputs is set but the model has no GsNet");
  }
  if (model.replacement_tolerance != 0.0 &&
      (!model.merged_levels ||
       !(model.replacement_tolerance > 0.0 && model.replacement_tolerance <= kMaxReplacementTolerance))) {
    return absl::InvalidArgumentError(absl::StrCat("replacement_tolerance ", model.replacement_tolerance,
                                                   " must be in (0, ", kMaxReplacementTolerance,
                                                   "] and needs merged levels"));
  }
  if (model.merge_refine_passes < 0 || model.merge_refine_passes > kMaxMergeRefinePasses ||
      (model.merge_refine_passes != kDefaultMergeRefinePasses && !model.merged_levels)) {
    return absl::InvalidArgumentError(absl::StrCat("merge_refine_passes ", model.merge_refine_passes, " must be in 0..",
                                                   kMaxMergeRefinePasses,
                                                   " and differs from the default only with "
                                                   "merged levels"));
  }
  if (model.pose_at_insertion && !model.field) {
    return absl::InvalidArgumentError("pose_at_insertion is set but the model has no transform field");
  }
  FLEXGS_RETURN_IF_ERROR(ValidateRefinedRungs(model));
  if (model.field) {
    FLEXGS_RETURN_IF_ERROR(CheckFieldConfigBounds(model.field->config));
    FLEXGS_RETURN_IF_ERROR(model.field->Validate());
  }
  FLEXGS_RETURN_IF_ERROR(ValidateLadder(model.ladder));
  FLEXGS_RETURN_IF_ERROR(ValidateNormalization(model.normalization));
  FLEXGS_RETURN_IF_ERROR(ValidateProvenance(model.gi));
  return absl::OkStatus();
}

// An existing directory may only be overwritten if it holds nothing but bundle
// files (and leftovers of interrupted atomic writes): writing three files into,
// say, a home directory passed by mistake would be a nasty surprise. Sets *exists.
absl::Status CheckTargetDirectory(const std::string& dir, bool* exists) {
  std::error_code ec;
  const fs::path path(dir);
  *exists = fs::exists(path, ec);
  if (!*exists) return absl::OkStatus();
  if (!fs::is_directory(path, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, ": exists and is not a directory"));
  }
  // Explicit increment(ec): the range-for form throws on I/O errors.
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    bool ours = false;
    for (const char* file : {kBundlePlyFile, kBundleTensorFile, kBundleManifestFile}) {
      ours = ours || name == file || absl::StartsWith(name, absl::StrCat(".", file, ".tmp."));
    }
    if (!ours) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, ": exists and holds ", name, ", so it is not a model bundle; refusing to write into it"));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat(dir, ": cannot list: ", ec.message()));
  return absl::OkStatus();
}

struct BundleFiles {
  const std::string& ply;
  const std::string& safetensors;
  const std::string& manifest;
};

// The three files into `dir`, each atomically, manifest.json last.
absl::Status WriteFilesInto(const fs::path& dir, const BundleFiles& files) {
  FLEXGS_RETURN_IF_ERROR(WriteFileAtomically((dir / kBundlePlyFile).string(), files.ply));
  FLEXGS_RETURN_IF_ERROR(WriteFileAtomically((dir / kBundleTensorFile).string(), files.safetensors));
  return WriteFileAtomically((dir / kBundleManifestFile).string(), files.manifest);
}

void SyncDirectory(const fs::path& dir) {
  // Best effort: some filesystems refuse fsync on directories.
  if (const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Puts the bundle at `dir` as a whole. The files are written into a fresh sibling
// directory `.<name>.tmp.XXXXXX` (which no scenes-directory scan picks up), which then
// takes `dir`'s place with one rename (new bundle) or one atomic exchange (replacing
// a bundle; the old files are then deleted). So a server rescanning its scenes while
// this runs sees the old bundle or the new one, never a mix, and a failure -- a full
// disk above all -- leaves `dir` as it was and no partial bundle anywhere.
// Where the exchange is not possible (a filesystem without RENAME_EXCHANGE, `dir` a
// mount point, a parent we cannot write) the files are replaced one by one inside
// `dir`, manifest last: each file is still atomic and the checksums make a reader
// that races the writer fail instead of mixing versions.
absl::Status PublishBundle(const std::string& dir_arg, const BundleFiles& files) {
  std::error_code ec;
  fs::path dir = fs::path(dir_arg).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();  // "out/scene.flexgs/"
  // A symlinked bundle is updated where it points, keeping the link.
  if (fs::is_symlink(dir, ec)) {
    dir = fs::canonical(dir, ec);
    if (ec) return absl::NotFoundError(absl::StrCat(dir_arg, ": dangling symlink: ", ec.message()));
  }
  bool exists = false;
  FLEXGS_RETURN_IF_ERROR(CheckTargetDirectory(dir.string(), &exists));
  fs::path parent = dir.parent_path();
  if (parent.empty()) parent = ".";
  if (!exists && !fs::create_directories(parent, ec) && ec) {
    return absl::InternalError(absl::StrCat(parent.string(), ": cannot create directory: ", ec.message()));
  }
  std::string staging = (parent / ("." + dir.filename().string() + ".tmp.XXXXXX")).string();
  if (::mkdtemp(staging.data()) == nullptr) {
    const int err = errno;
    if (exists && (err == EACCES || err == EPERM)) return WriteFilesInto(dir, files);  // parent not ours: in place
    return absl::ErrnoToStatus(err, absl::StrCat(dir_arg, ": cannot create a staging directory next to it"));
  }
  auto fail = [&](const absl::Status& status) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    return absl::Status(status.code(), absl::StrCat("cannot write the bundle ", dir_arg, ": ", status.message()));
  };
  // mkdtemp creates 0700; the bundle is meant to be read by a server running as another user.
  if (::chmod(staging.c_str(), 0755) != 0) return fail(absl::ErrnoToStatus(errno, "chmod of the staging directory"));
  if (absl::Status s = WriteFilesInto(staging, files); !s.ok()) return fail(s);
  if (!exists) {
    if (::rename(staging.c_str(), dir.c_str()) != 0) {
      return fail(absl::ErrnoToStatus(errno, "rename of the staging directory"));
    }
  } else if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(staging, ec);  // now the old bundle; a leftover is harmless (hidden name)
  } else {
    // No atomic exchange here: move the new files in one by one, manifest last.
    for (const char* name : {kBundlePlyFile, kBundleTensorFile, kBundleManifestFile}) {
      const fs::path from = fs::path(staging) / name, to = dir / name;
      if (::rename(from.c_str(), to.c_str()) != 0) {
        return fail(absl::ErrnoToStatus(errno, absl::StrCat("moving ", name, " into place")));
      }
    }
    fs::remove_all(staging, ec);
    SyncDirectory(dir);
  }
  SyncDirectory(parent);
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteModelBundle(const std::string& dir, ElasticModel& model) {
  FLEXGS_RETURN_IF_ERROR(Prefixed("WriteModelBundle", ValidateModel(model)));
  absl::StatusOr<json> training = ParseTrainingSummary(model.training_summary_json);
  if (!training.ok()) return Prefixed("WriteModelBundle", training.status());

  // Serialise everything in memory first: a model that cannot be written leaves the
  // disk untouched.
  const std::string ply = SerializeGaussianPly(model.gaussians);
  if (ply.empty()) return absl::InternalError("WriteModelBundle: the Gaussians could not be serialised");
  const TensorMap tensors = ModelTensors(model);
  FLEXGS_RETURN_IF_ERROR(Prefixed(
      "WriteModelBundle",
      CheckTensors(tensors, ExpectedShapes(static_cast<int64_t>(model.gaussians.size()), model.gsnet.has_value(),
                                           model.field ? &model.field->config : nullptr, RefinedSizes(model),
                                           model.gaussians.sh_degree))));
  const std::string safetensors = SerializeSafetensors(
      tensors, {{"format", kBundleFormatName}, {"format_version", std::to_string(kModelFormatVersion)}});
  if (safetensors.empty()) return absl::InternalError("WriteModelBundle: the tensors could not be serialised");

  json manifest;
  std::string manifest_text;
  std::string digest;
  try {
    const FieldNormalization& n = model.normalization;
    manifest = {
        {"format", kBundleFormatName},
        {"format_version", kModelFormatVersion},
        {"gaussians", model.gaussians.size()},
        {"sh_degree", model.gaussians.sh_degree},
        {"ladder", model.ladder},
        {"bounds",
         {{"min", {double{n.aabb_min[0]}, double{n.aabb_min[1]}, double{n.aabb_min[2]}}},
          {"max", {double{n.aabb_max[0]}, double{n.aabb_max[1]}, double{n.aabb_max[2]}}}}},
        {"ratio_normalization", {{"scale", double{n.ratio_scale}}, {"offset", double{n.ratio_offset}}}},
        {"field_config", model.field ? FieldConfigJson(model.field->config) : json(nullptr)},
        {"has_gsnet", model.gsnet.has_value()},
        {"gi",
         {{"variant", model.gi.variant},
          {"views", model.gi.views},
          {"width", model.gi.width},
          {"height", model.gi.height},
          {"tensor", kGiTensor}}},
        {"training", *training},
        {"files",
         {{kBundlePlyFile, {{"sha256", Sha256Hex(ply)}, {"bytes", ply.size()}}},
          {kBundleTensorFile, {{"sha256", Sha256Hex(safetensors)}, {"bytes", safetensors.size()}}}}},
    };
    if (model.gi_prior_weight != 0.0) manifest["selector"]["gi_prior_weight"] = model.gi_prior_weight;
    if (model.coverage_share != 0.0) manifest["selector"]["coverage_share"] = model.coverage_share;
    if (model.gsnet_box_inputs) manifest["selector"]["gsnet_inputs"] = "box";
    // Optional, written only when set, so bundles without it keep their bytes and digests.
    if (model.pose_at_insertion) manifest["field_pose"] = "insertion";
    if (model.merged_levels) manifest["level_attributes"] = "merged";
    if (model.replacement_tolerance != 0.0) manifest["replacement_tolerance"] = model.replacement_tolerance;
    if (model.merge_refine_passes != kDefaultMergeRefinePasses) {
      manifest["merge_refine_passes"] = model.merge_refine_passes;
    }
    for (const RefinedRung& r : model.refined_rungs) {
      manifest["refined_rungs"].push_back({{"ratio", r.ratio},
                                           {"gaussians", r.held.size()},
                                           {"held_digest", absl::StrCat(absl::Hex(r.held_digest, absl::kZeroPad16))}});
    }
    FLEXGS_ASSIGN_OR_RETURN(digest, ManifestDigest(manifest));
    manifest["digest"] = digest;
    manifest_text = manifest.dump(2) + "\n";
  } catch (const json::exception& e) {
    // Only reachable with strings that are not UTF-8 (the GI variant name).
    return absl::InvalidArgumentError(absl::StrCat("WriteModelBundle: cannot build the manifest: ", e.what()));
  }

  FLEXGS_RETURN_IF_ERROR(PublishBundle(dir, BundleFiles{ply, safetensors, manifest_text}));
  model.digest = std::move(digest);
  model.training_summary_json = training->dump();
  return absl::OkStatus();
}

namespace {

// ReadModelBundle's checks, in order, on a manifest that passed ParseManifest. With
// `files_dir` null only the manifest is validated (ParseBundleManifest).
absl::StatusOr<ElasticModel> LoadBundle(const json& manifest, const std::string& manifest_path,
                                        const std::string* files_dir) {
  auto bad = [&](const absl::Status& s) { return Prefixed(manifest_path, s); };

  // "selector" (written only for a GI-prior ranking) and "field_pose" (only for poses
  // fixed at insertion) are optional; the rest is required.
  const bool has_selector = manifest.is_object() && manifest.contains("selector");
  const bool has_field_pose = manifest.is_object() && manifest.contains("field_pose");
  const bool has_level_attributes = manifest.is_object() && manifest.contains("level_attributes");
  const bool has_tolerance = manifest.is_object() && manifest.contains("replacement_tolerance");
  const bool has_passes = manifest.is_object() && manifest.contains("merge_refine_passes");
  const bool has_refined = manifest.is_object() && manifest.contains("refined_rungs");
  std::vector<const char*> key_names = {
      "format",       "format_version", "gaussians", "sh_degree", "ladder", "bounds", "ratio_normalization",
      "field_config", "has_gsnet",      "gi",        "training",  "files",  "digest"};
  if (has_selector) key_names.push_back("selector");
  if (has_field_pose) key_names.push_back("field_pose");
  if (has_level_attributes) key_names.push_back("level_attributes");
  if (has_tolerance) key_names.push_back("replacement_tolerance");
  if (has_passes) key_names.push_back("merge_refine_passes");
  if (has_refined) key_names.push_back("refined_rungs");
  absl::Status keys = CheckKeys(manifest, key_names, "");
  if (!keys.ok()) return bad(keys);

  // Everything goes into a local model that is returned only when complete.
  ElasticModel model;
  if (has_field_pose) {
    const json& pose = manifest.at("field_pose");
    if (!pose.is_string() || pose.get<std::string>() != "insertion") {
      return bad(BadManifest("\"field_pose\" must be \"insertion\" when present"));
    }
    model.pose_at_insertion = true;
  }
  if (has_level_attributes) {
    const json& attributes = manifest.at("level_attributes");
    if (!attributes.is_string() || attributes.get<std::string>() != "merged") {
      return bad(BadManifest("\"level_attributes\" must be \"merged\" when present"));
    }
    model.merged_levels = true;
  }
  if (has_tolerance) {
    absl::StatusOr<float> t = AsFiniteFloat(manifest.at("replacement_tolerance"), "replacement_tolerance");
    if (!t.ok()) return bad(t.status());
    if (!(*t > 0.0f && *t <= kMaxReplacementTolerance) || !model.merged_levels) {
      return bad(BadManifest(absl::StrCat("\"replacement_tolerance\" must be in (0, ", kMaxReplacementTolerance,
                                          "] and only with merged levels")));
    }
    model.replacement_tolerance = *t;
  }
  if (has_passes) {
    const json& passes = manifest.at("merge_refine_passes");
    if (!passes.is_number_integer() || passes.get<int64_t>() < 0 || passes.get<int64_t>() > kMaxMergeRefinePasses ||
        !model.merged_levels) {
      return bad(BadManifest(absl::StrCat("\"merge_refine_passes\" must be an integer in 0..", kMaxMergeRefinePasses,
                                          " and only with merged levels")));
    }
    model.merge_refine_passes = static_cast<int>(passes.get<int64_t>());
  }
  std::vector<int64_t> refined_sizes;
  if (has_refined) {
    const json& rungs = manifest.at("refined_rungs");
    if (!rungs.is_array() || rungs.empty() || rungs.size() > kMaxRefinedRungs || !model.merged_levels) {
      return bad(BadManifest(absl::StrCat("\"refined_rungs\" must be an array of 1 to ", kMaxRefinedRungs,
                                          " rungs and only with merged levels")));
    }
    for (size_t k = 0; k < rungs.size(); ++k) {
      const std::string where = absl::StrCat("refined_rungs[", k, "]");
      if (absl::Status s = CheckKeys(rungs[k], {"ratio", "gaussians", "held_digest"}, where); !s.ok()) return bad(s);
      RefinedRung r;
      if (!rungs[k].at("ratio").is_number())
        return bad(BadManifest(absl::StrCat("\"", where, ".ratio\" is not a number")));
      r.ratio = rungs[k].at("ratio").get<double>();
      absl::StatusOr<int64_t> n = GetInt(rungs[k], "gaussians", 1, std::numeric_limits<uint32_t>::max(), where + ".");
      if (!n.ok()) return bad(n.status());
      absl::StatusOr<std::string> digest = GetString(rungs[k], "held_digest", where + ".");
      if (!digest.ok()) return bad(digest.status());
      if (digest->size() != 16 || !absl::SimpleHexAtoi(*digest, &r.held_digest)) {
        return bad(BadManifest(absl::StrCat("\"", where, ".held_digest\" is not 16 hex digits")));
      }
      refined_sizes.push_back(*n);
      model.refined_rungs.push_back(std::move(r));
    }
  }
  if (has_selector) {
    // Each key is optional, written only when set; an empty selector is refused.
    const json& selector = manifest.at("selector");
    std::vector<const char*> selector_keys;
    for (const char* key : {"gi_prior_weight", "coverage_share", "gsnet_inputs"}) {
      if (selector.is_object() && selector.contains(key)) selector_keys.push_back(key);
    }
    if (selector_keys.empty() && selector.is_object()) return bad(BadManifest("\"selector\" is empty"));
    if (absl::Status s = CheckKeys(selector, selector_keys, "selector"); !s.ok()) return bad(s);
    if (selector.contains("gi_prior_weight")) {
      absl::StatusOr<float> w = AsFiniteFloat(selector.at("gi_prior_weight"), "selector.gi_prior_weight");
      if (!w.ok()) return bad(w.status());
      if (!(*w > 0.0f && *w <= kMaxGiPriorWeight)) {
        return bad(
            BadManifest(absl::StrCat("\"selector.gi_prior_weight\" ", *w, " is not in (0, ", kMaxGiPriorWeight, "]")));
      }
      model.gi_prior_weight = selector.at("gi_prior_weight").get<double>();
    }
    if (selector.contains("coverage_share")) {
      absl::StatusOr<float> c = AsFiniteFloat(selector.at("coverage_share"), "selector.coverage_share");
      if (!c.ok()) return bad(c.status());
      if (!(*c > 0.0f && *c <= 1.0f)) {
        return bad(BadManifest(absl::StrCat("\"selector.coverage_share\" ", *c, " is not in (0, 1]")));
      }
      model.coverage_share = selector.at("coverage_share").get<double>();
    }
    if (selector.contains("gsnet_inputs")) {
      const json& inputs = selector.at("gsnet_inputs");
      if (!inputs.is_string() || inputs.get<std::string>() != "box") {
        return bad(BadManifest("\"selector.gsnet_inputs\" must be \"box\" when present"));
      }
      model.gsnet_box_inputs = true;
    }
  }
  absl::StatusOr<int64_t> gaussians = GetInt(manifest, "gaussians", 1, std::numeric_limits<uint32_t>::max());
  if (!gaussians.ok()) return bad(gaussians.status());
  absl::StatusOr<int64_t> sh_degree = GetInt(manifest, "sh_degree", 0, kMaxShDegree);
  if (!sh_degree.ok()) return bad(sh_degree.status());

  const json& ladder = manifest.at("ladder");
  if (!ladder.is_array()) return bad(BadManifest("\"ladder\" is not an array"));
  model.ladder.clear();
  for (const json& e : ladder) {
    if (!e.is_number()) return bad(BadManifest("\"ladder\" holds a non-number"));
    model.ladder.push_back(e.get<double>());
  }
  if (absl::Status s = ValidateLadder(model.ladder); !s.ok()) return bad(s);

  const json& bounds = manifest.at("bounds");
  if (absl::Status s = CheckKeys(bounds, {"min", "max"}, "bounds"); !s.ok()) return bad(s);
  for (const char* which : {"min", "max"}) {
    const json& v = bounds.at(which);
    if (!v.is_array() || v.size() != 3) {
      return bad(BadManifest(absl::StrCat("\"bounds.", which, "\" is not an array of 3 numbers")));
    }
    std::array<float, 3>& dst =
        std::string_view(which) == "min" ? model.normalization.aabb_min : model.normalization.aabb_max;
    for (int a = 0; a < 3; ++a) {
      absl::StatusOr<float> f = AsFiniteFloat(v[a], absl::StrCat("bounds.", which, "[", a, "]"));
      if (!f.ok()) return bad(f.status());
      dst[a] = *f;
    }
  }
  const json& ratio = manifest.at("ratio_normalization");
  if (absl::Status s = CheckKeys(ratio, {"scale", "offset"}, "ratio_normalization"); !s.ok()) return bad(s);
  absl::StatusOr<float> ratio_scale = AsFiniteFloat(ratio.at("scale"), "ratio_normalization.scale");
  if (!ratio_scale.ok()) return bad(ratio_scale.status());
  absl::StatusOr<float> ratio_offset = AsFiniteFloat(ratio.at("offset"), "ratio_normalization.offset");
  if (!ratio_offset.ok()) return bad(ratio_offset.status());
  model.normalization.ratio_scale = *ratio_scale;
  model.normalization.ratio_offset = *ratio_offset;
  if (absl::Status s = ValidateNormalization(model.normalization); !s.ok()) return bad(s);

  std::optional<TransformFieldConfig> field_config;
  if (!manifest.at("field_config").is_null()) {
    absl::StatusOr<TransformFieldConfig> c = ParseFieldConfig(manifest.at("field_config"));
    if (!c.ok()) return bad(c.status());
    field_config = *std::move(c);
  }
  if (!manifest.at("has_gsnet").is_boolean()) return bad(BadManifest("\"has_gsnet\" is not a boolean"));
  const bool has_gsnet = manifest.at("has_gsnet").get<bool>();

  const json& gi = manifest.at("gi");
  if (absl::Status s = CheckKeys(gi, {"variant", "views", "width", "height", "tensor"}, "gi"); !s.ok()) {
    return bad(s);
  }
  {
    constexpr int64_t kIntMax = std::numeric_limits<int>::max();
    absl::StatusOr<std::string> variant = GetString(gi, "variant", "gi.");
    absl::StatusOr<int64_t> views = GetInt(gi, "views", 0, kIntMax, "gi.");
    absl::StatusOr<int64_t> width = GetInt(gi, "width", 0, kIntMax, "gi.");
    absl::StatusOr<int64_t> height = GetInt(gi, "height", 0, kIntMax, "gi.");
    absl::StatusOr<std::string> tensor = GetString(gi, "tensor", "gi.");
    for (const absl::Status& s : {variant.status(), views.status(), width.status(), height.status(), tensor.status()}) {
      if (!s.ok()) return bad(s);
    }
    if (*tensor != kGiTensor) {
      return bad(BadManifest(absl::StrCat("\"gi.tensor\" is \"", *tensor, "\", expected \"", kGiTensor, "\"")));
    }
    model.gi = GiProvenance{*variant, static_cast<int>(*views), static_cast<int>(*width), static_cast<int>(*height)};
    if (absl::Status s = ValidateProvenance(model.gi); !s.ok()) return bad(s);
  }
  if (!manifest.at("training").is_object()) return bad(BadManifest("\"training\" is not an object"));
  try {
    model.training_summary_json = manifest.at("training").dump();
  } catch (const json::exception& e) {
    return bad(BadManifest(absl::StrCat("\"training\" cannot be serialised: ", e.what())));
  }

  absl::StatusOr<FileEntry> ply_entry = ParseFileEntry(manifest.at("files"), kBundlePlyFile);
  if (!ply_entry.ok()) return bad(ply_entry.status());
  absl::StatusOr<FileEntry> tensor_entry = ParseFileEntry(manifest.at("files"), kBundleTensorFile);
  if (!tensor_entry.ok()) return bad(tensor_entry.status());

  if (files_dir == nullptr) {
    model.digest = manifest.at("digest").get<std::string>();
    return model;
  }
  const std::string& dir = *files_dir;

  // Gaussians: verified bytes, parsed without repair, released before the tensors are read.
  {
    const std::string path = (fs::path(dir) / kBundlePlyFile).string();
    absl::StatusOr<std::string> bytes = ReadVerifiedFile(path, *ply_entry);
    if (!bytes.ok()) return bytes.status();
    PlyReadOptions options;
    options.sanitize = false;
    options.max_vertices = static_cast<uint64_t>(*gaussians);
    absl::StatusOr<GaussianCloud> cloud = ParseGaussianPly(*bytes, options);
    if (!cloud.ok()) return Prefixed(path, cloud.status());
    if (cloud->size() != static_cast<uint64_t>(*gaussians) || cloud->sh_degree != *sh_degree) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": holds ", cloud->size(), " Gaussians of SH degree ",
                                                     cloud->sh_degree, ", the manifest says ", *gaussians,
                                                     " of degree ", *sh_degree));
    }
    if (absl::Status s = CheckCloudFinite(*cloud); !s.ok()) return Prefixed(path, s);
    model.gaussians = *std::move(cloud);
  }

  // Tensors.
  {
    const std::string path = (fs::path(dir) / kBundleTensorFile).string();
    absl::StatusOr<std::string> bytes = ReadVerifiedFile(path, *tensor_entry);
    if (!bytes.ok()) return bytes.status();
    absl::StatusOr<TensorMap> parsed = ParseSafetensors(*bytes);
    if (!parsed.ok()) return Prefixed(path, parsed.status());
    bytes->clear();
    bytes->shrink_to_fit();
    TensorMap& tensors = *parsed;
    const ShapeMap expected = ExpectedShapes(*gaussians, has_gsnet, field_config ? &*field_config : nullptr,
                                             refined_sizes, static_cast<int>(*sh_degree));
    if (absl::Status s = CheckTensors(tensors, expected); !s.ok()) return Prefixed(path, s);
    for (size_t k = 0; k < model.refined_rungs.size(); ++k) {
      GaussianCloud& c = model.refined_rungs[k].held;
      c.sh_degree = static_cast<int>(*sh_degree);
      c.positions = std::move(tensors.at(RefinedTensorName(k, "position")).data);
      c.log_scales = std::move(tensors.at(RefinedTensorName(k, "log_scale")).data);
      c.rotations = std::move(tensors.at(RefinedTensorName(k, "rotation")).data);
      c.opacity_logits = std::move(tensors.at(RefinedTensorName(k, "opacity")).data);
      c.sh_dc = std::move(tensors.at(RefinedTensorName(k, "f_dc")).data);
      if (c.sh_degree > 0) c.sh_rest = std::move(tensors.at(RefinedTensorName(k, "f_rest")).data);
    }

    model.global_importance = std::move(tensors.at(kGiTensor).data);
    if (has_gsnet) {
      GsNetWeights net;
      for (int b = 0; b < 4; ++b) {
        const std::string branch = GsNetWeights::kBranchNames[b];
        net.fc1[b] = TakeLayer(tensors, "gsnet.fc1." + branch);
        net.fc2[b] = TakeLayer(tensors, "gsnet.fc2." + branch);
      }
      net.head = TakeLayer(tensors, "gsnet.head");
      if (absl::Status s = net.Validate(); !s.ok()) return Prefixed(path, s);
      model.gsnet = std::move(net);
    } else if (model.gi_prior_weight != 0.0) {
      return bad(BadManifest("\"selector\" is set but \"has_gsnet\" is false"));
    }
    if (field_config) {
      TransformFieldWeights field;
      field.config = *field_config;
      field.levels.resize(field_config->multires.size());
      for (size_t l = 0; l < field.levels.size(); ++l) {
        HexPlaneLevel& level = field.levels[l];
        level.spatial_resolution = static_cast<int>(SpatialResolution(*field_config, l));
        level.ratio_resolution = field_config->ratio_resolution;
        for (int p = 0; p < 6; ++p) level.planes[p] = std::move(tensors.at(LevelTensorName(l, p)).data);
      }
      field.trunk = TakeLayer(tensors, "field.trunk");
      for (int h = 0; h < 3; ++h) {
        const std::string head = TransformFieldWeights::kHeadNames[h];
        field.fc1[h] = TakeLayer(tensors, "field." + head + ".fc1");
        field.fc2[h] = TakeLayer(tensors, "field." + head + ".fc2");
      }
      if (absl::Status s = field.Validate(); !s.ok()) return Prefixed(path, s);
      model.field = std::move(field);
    }
  }
  if (absl::Status s = ValidateRefinedRungs(model); !s.ok()) return bad(s);
  model.digest = manifest.at("digest").get<std::string>();
  return model;
}

}  // namespace

absl::StatusOr<ElasticModel> ReadModelBundle(const std::string& dir) {
  FLEXGS_ASSIGN_OR_RETURN(const json manifest, ReadManifest(dir));
  return LoadBundle(manifest, ManifestPath(dir), &dir);
}

absl::StatusOr<ElasticModel> ParseBundleManifest(std::string_view manifest_text) {
  FLEXGS_ASSIGN_OR_RETURN(const json manifest, ParseManifest(manifest_text, kBundleManifestFile));
  return LoadBundle(manifest, kBundleManifestFile, nullptr);
}

absl::StatusOr<std::string> ReadModelDigest(const std::string& dir) {
  FLEXGS_ASSIGN_OR_RETURN(const json manifest, ReadManifest(dir));
  return manifest.at("digest").get<std::string>();
}

}  // namespace flexgs
