// Fuzz target: the manifest.json reader of model bundles (ParseBundleManifest,
// core/elastic/model_bundle.h). A manifest whose only fault is a stale digest is tried
// again with the digest recomputed, so mutations reach the field checks behind it.
//
// Invariants of an accepted manifest: the digest is the SHA-256 of the canonical
// serialisation without "digest" (as documented), the ladder is strictly increasing
// in (0, 1], bounds are finite with min < max, the GI provenance is sane, the
// training summary is a JSON object, and the same JSON re-serialised compactly
// parses to the same metadata.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "base/sha256.h"
#include "elastic/model_bundle.h"
#include "fuzz/fuzz_check.h"
#include "nlohmann/json.hpp"

namespace flexgs::fuzz {
namespace {

using nlohmann::json;

// Only called on text ParseBundleManifest got past its JSON checks (nesting depth,
// duplicate keys), so nlohmann's own parse cannot recurse deeply here.
std::optional<json> ParseJson(std::string_view text) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::string CanonicalDigest(json manifest) {
  manifest.erase("digest");
  return Sha256Hex(manifest.dump());
}

bool SameMetadata(const ElasticModel& a, const ElasticModel& b) {
  return a.digest == b.digest && a.ladder == b.ladder && a.normalization.aabb_min == b.normalization.aabb_min &&
         a.normalization.aabb_max == b.normalization.aabb_max &&
         a.normalization.ratio_scale == b.normalization.ratio_scale &&
         a.normalization.ratio_offset == b.normalization.ratio_offset && a.gi.variant == b.gi.variant &&
         a.gi.views == b.gi.views && a.gi.width == b.gi.width && a.gi.height == b.gi.height &&
         a.training_summary_json == b.training_summary_json;
}

void CheckAccepted(std::string_view text, const ElasticModel& m) {
  std::optional<json> j = ParseJson(text);
  FUZZ_CHECK(j.has_value());
  FUZZ_CHECK(IsSha256Hex(m.digest));
  FUZZ_CHECK(m.digest == CanonicalDigest(*j));
  FUZZ_CHECK(!m.ladder.empty());
  for (size_t i = 0; i < m.ladder.size(); ++i) {
    FUZZ_CHECK(m.ladder[i] > 0.0 && m.ladder[i] <= 1.0);
    FUZZ_CHECK(i == 0 || m.ladder[i] > m.ladder[i - 1]);
  }
  for (int a = 0; a < 3; ++a) {
    FUZZ_CHECK(std::isfinite(m.normalization.aabb_min[a]) && std::isfinite(m.normalization.aabb_max[a]));
    FUZZ_CHECK(m.normalization.aabb_min[a] < m.normalization.aabb_max[a]);
  }
  FUZZ_CHECK(std::isfinite(m.normalization.ratio_scale) && std::isfinite(m.normalization.ratio_offset));
  FUZZ_CHECK(!m.gi.variant.empty() && m.gi.views >= 0 && m.gi.width >= 0 && m.gi.height >= 0);
  std::optional<json> training = ParseJson(m.training_summary_json);
  FUZZ_CHECK(training.has_value() && training->is_object());
  FUZZ_CHECK(m.gaussians.empty() && m.global_importance.empty() && !m.gsnet && !m.field);

  const std::string compact = j->dump();
  absl::StatusOr<ElasticModel> again = ParseBundleManifest(compact);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(SameMetadata(*again, m));
}

}  // namespace
}  // namespace flexgs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flexgs;
  using namespace flexgs::fuzz;
  const std::string_view text = Bytes(data, size);
  absl::StatusOr<ElasticModel> model = ParseBundleManifest(text);
  if (model.ok()) {
    CheckAccepted(text, *model);
    return 0;
  }
  FUZZ_CHECK(absl::StartsWith(model.status().message(), "manifest.json: "));
  // DataLoss is the digest mismatch: everything before it was checked already.
  if (model.status().code() != absl::StatusCode::kDataLoss) return 0;
  std::optional<json> j = ParseJson(text);
  FUZZ_CHECK(j.has_value() && j->is_object());
  (*j)["digest"] = CanonicalDigest(*j);
  const std::string fixed = j->dump(2);
  absl::StatusOr<ElasticModel> fixed_model = ParseBundleManifest(fixed);
  if (!fixed_model.ok()) {
    FUZZ_CHECK(fixed_model.status().code() != absl::StatusCode::kDataLoss);
    return 0;
  }
  CheckAccepted(fixed, *fixed_model);
  return 0;
}
