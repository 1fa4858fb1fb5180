#include "io/strict_json.h"

#include "absl/strings/str_cat.h"

namespace flexgs {

bool RepeatedKeyFinder::Observe(nlohmann::json::parse_event_t event, const nlohmann::json& parsed) {
  using Event = nlohmann::json::parse_event_t;
  if (event == Event::object_start) {
    open_objects_.emplace_back();
  } else if (event == Event::object_end) {
    if (!open_objects_.empty()) open_objects_.pop_back();
  } else if (event == Event::key && !open_objects_.empty() && parsed.is_string()) {
    if (!open_objects_.back().insert(parsed.get<std::string>()).second && repeated_.empty()) {
      repeated_ = parsed.get<std::string>();
    }
  }
  return true;
}

absl::StatusOr<nlohmann::json> ParseJsonStrict(std::string_view text, int max_depth) {
  using json = nlohmann::json;
  bool too_deep = false;
  RepeatedKeyFinder keys;
  const json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (too_deep) return false;
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= max_depth) {
      too_deep = true;
      return false;  // discarded: nothing below this level is built
    }
    return keys.Observe(event, parsed);
  };
  json parsed;
  try {
    parsed = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", e.what()));
  }
  if (too_deep) return absl::InvalidArgumentError(absl::StrCat("JSON nests deeper than ", max_depth, " levels"));
  if (!keys.repeated().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("JSON repeats the key \"", keys.repeated(), "\""));
  }
  return parsed;
}

}  // namespace flexgs
