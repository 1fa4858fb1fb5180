#include "io/safetensors.h"

#include <algorithm>
#include <limits>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/byte_io.h"
#include "io/strict_json.h"
#include "nlohmann/json.hpp"

namespace flexgs {
namespace {

using nlohmann::json;

constexpr char kMetadataKey[] = "__metadata__";
// The real header nests three levels ({name: {shape: [..]}}); anything deeper is
// hostile. Checked before nlohmann builds a DOM so the depth of recursion and the
// size of the tree stay bounded.
constexpr int kMaxJsonDepth = 4;

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(absl::StrCat("safetensors: ", what)); }

// Maximum nesting depth of arrays/objects in a JSON text (strings skipped).
int JsonNestingDepth(std::string_view text) {
  int depth = 0;
  int max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skip the escaped character (enough to find the closing quote)
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

// A non-negative JSON integer as uint64, or false.
bool AsUnsigned(const json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

struct Entry {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

absl::StatusOr<Entry> ParseEntry(const std::string& name, const json& info, uint64_t data_bytes) {
  const std::string who = absl::StrCat("tensor '", name, "'");
  if (name.empty()) return Invalid("empty tensor name");
  if (!info.is_object()) return Invalid(absl::StrCat(who, ": entry is not an object"));
  for (const auto& item : info.items()) {
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets") {
      return Invalid(absl::StrCat(who, ": unknown field '", item.key(), "'"));
    }
  }
  const auto dtype = info.find("dtype");
  const auto shape = info.find("shape");
  const auto offsets = info.find("data_offsets");
  if (dtype == info.end() || shape == info.end() || offsets == info.end()) {
    return Invalid(absl::StrCat(who, ": needs dtype, shape and data_offsets"));
  }
  if (!dtype->is_string()) return Invalid(absl::StrCat(who, ": dtype is not a string"));
  if (dtype->get_ref<const std::string&>() != "F32") {
    return Invalid(absl::StrCat(who, " has dtype ", dtype->get_ref<const std::string&>(), "; only F32 is supported"));
  }

  Entry e;
  e.name = name;
  if (!shape->is_array()) return Invalid(absl::StrCat(who, ": shape is not an array"));
  if (shape->size() > static_cast<size_t>(kMaxSafetensorsRank)) {
    return Invalid(absl::StrCat(who, ": rank ", shape->size(), " exceeds the limit of ", kMaxSafetensorsRank));
  }
  for (const json& d : *shape) {
    uint64_t dim = 0;
    if (!AsUnsigned(d, &dim) || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(absl::StrCat(who, ": shape ", d.dump(), " entry is not a non-negative integer"));
    }
    e.shape.push_back(static_cast<int64_t>(dim));
  }
  const int64_t count = ShapeElementCount(e.shape);
  if (count < 0) return Invalid(absl::StrCat(who, ": shape ", ShapeString(e.shape), " is too large"));

  if (!offsets->is_array() || offsets->size() != 2 || !AsUnsigned((*offsets)[0], &e.begin) ||
      !AsUnsigned((*offsets)[1], &e.end)) {
    return Invalid(absl::StrCat(who, ": data_offsets must be two non-negative integers"));
  }
  if (e.begin > e.end || e.end > data_bytes) {
    return Invalid(absl::StrCat(who, ": data_offsets [", e.begin, ", ", e.end, ") out of range of the ", data_bytes,
                                "-byte data section"));
  }
  const uint64_t expected = static_cast<uint64_t>(count) * sizeof(float);
  if (e.end - e.begin != expected) {
    return Invalid(absl::StrCat(who, ": data_offsets span ", e.end - e.begin, " bytes but shape ", ShapeString(e.shape),
                                " of F32 needs ", expected));
  }
  return e;
}

}  // namespace

int64_t ShapeElementCount(const std::vector<int64_t>& shape) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / static_cast<int64_t>(sizeof(float));
  int64_t count = 1;
  bool zero = false;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d == 0) {
      zero = true;
      continue;
    }
    // Checked even after a zero dimension: an absurd shape is rejected regardless.
    if (count > kMax / d) return -1;
    count *= d;
  }
  return zero ? 0 : count;
}

std::string SerializeSafetensors(const TensorMap& tensors, const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const int64_t count = ShapeElementCount(tensor.shape);
    if (name.empty() || name == kMetadataKey || count < 0 || static_cast<uint64_t>(count) != tensor.data.size()) {
      return "";
    }
    const uint64_t bytes = static_cast<uint64_t>(count) * sizeof(float);
    header[name] = {{"dtype", "F32"}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;

  std::string text;
  try {
    text = header.dump();  // throws on names or metadata that are not valid UTF-8
  } catch (const json::exception&) {
    return "";
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + text.size() + offset);
  ByteWriter w(&out);
  w.Put(static_cast<uint64_t>(text.size()));
  w.PutBytes(text);
  for (const auto& [name, tensor] : tensors) w.PutFloats(tensor.data);
  return out;
}

absl::StatusOr<TensorMap> ParseSafetensors(std::string_view bytes, std::map<std::string, std::string>* metadata) {
  ByteReader r(bytes);
  uint64_t header_len = 0;
  if (!r.Get(&header_len)) {
    return Invalid(absl::StrCat("file of ", bytes.size(), " bytes is too short for a header"));
  }
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Invalid(absl::StrCat("header length ", header_len, " exceeds the limit of ", kMaxSafetensorsHeaderBytes));
  }
  if (header_len > bytes.size() - 8) {
    return Invalid(absl::StrCat("header length ", header_len, " exceeds the ", bytes.size() - 8,
                                " bytes after the length field (truncated file?)"));
  }
  const std::string_view header_text = bytes.substr(8, header_len);
  const std::string_view data = bytes.substr(8 + header_len);
  if (header_text.empty() || header_text[0] != '{') return Invalid("header does not start with '{'");
  if (JsonNestingDepth(header_text) > kMaxJsonDepth) {
    return Invalid(absl::StrCat("header JSON nests deeper than ", kMaxJsonDepth, " levels"));
  }

  // Duplicate keys would silently shadow each other in nlohmann's DOM (depth is bounded above).
  RepeatedKeyFinder keys;
  const json::parser_callback_t track_keys = [&](int, json::parse_event_t event, json& parsed) {
    return keys.Observe(event, parsed);
  };
  json header;
  try {
    header = json::parse(header_text.begin(), header_text.end(), track_keys, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    return Invalid(absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) return Invalid("header is not a JSON object");
  if (!keys.repeated().empty()) return Invalid(absl::StrCat("header repeats the key '", keys.repeated(), "'"));

  std::vector<Entry> entries;
  entries.reserve(header.size());
  std::map<std::string, std::string> meta;
  for (const auto& item : header.items()) {
    if (item.key() == kMetadataKey) {
      if (!item.value().is_object()) return Invalid("__metadata__ is not an object");
      for (const auto& m : item.value().items()) {
        if (!m.value().is_string()) {
          return Invalid(absl::StrCat("__metadata__ value for '", m.key(), "' is not a string"));
        }
        meta.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    absl::StatusOr<Entry> e = ParseEntry(item.key(), item.value(), data.size());
    if (!e.ok()) return e.status();
    entries.push_back(*std::move(e));
  }

  // The tensors must tile the data section exactly: no overlap, no gap, nothing after.
  std::vector<const Entry*> by_offset;
  by_offset.reserve(entries.size());
  for (const Entry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
  });
  uint64_t expected_begin = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : by_offset) {
    if (e->begin < expected_begin) {
      return Invalid(absl::StrCat("tensor '", e->name, "' data [", e->begin, ", ", e->end, ") overlaps tensor '",
                                  previous->name, "' [", previous->begin, ", ", previous->end, ")"));
    }
    if (e->begin > expected_begin) {
      return Invalid(absl::StrCat("bytes [", expected_begin, ", ", e->begin,
                                  ") of the data section belong to no tensor (before tensor '", e->name, "')"));
    }
    expected_begin = e->end;
    previous = e;
  }
  if (expected_begin != data.size()) {
    return Invalid(absl::StrCat(data.size() - expected_begin, " trailing bytes after the last tensor"));
  }

  // Sizes are now proven to lie within `bytes`, so these allocations are bounded by the input.
  TensorMap tensors;
  for (Entry& e : entries) {
    Tensor t;
    const size_t count = static_cast<size_t>((e.end - e.begin) / sizeof(float));
    ByteReader floats(data.substr(e.begin, e.end - e.begin));
    if (!floats.Floats(count, &t.data)) return Invalid(absl::StrCat("tensor '", e.name, "' is truncated"));
    t.shape = std::move(e.shape);
    tensors.emplace(std::move(e.name), std::move(t));
  }
  if (metadata != nullptr) *metadata = std::move(meta);
  return tensors;
}

}  // namespace flexgs
