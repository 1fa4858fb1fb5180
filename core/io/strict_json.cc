#include "io/strict_json.h"

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

}  // namespace flexgs
