#include "loadgen/load_spec.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/budget_spec.h"

namespace flexgs::loadgen {
namespace {

// `problem` may already say what was expected (a size's units); then no general hint.
absl::Status BadBudget(absl::string_view entry, absl::string_view problem, bool hint = true) {
  return absl::InvalidArgumentError(absl::StrCat(
      "--budgets entry '", entry, "': ", problem,
      hint ? " (expected ratio:R with R in (0, 1], bytes:SIZE like 2MiB, or gaussians:N; optional @WEIGHT, e.g. "
             "ratio:0.15@3)"
           : ""));
}

}  // namespace

absl::StatusOr<std::vector<Budget>> ParseBudgetMix(absl::string_view text) {
  std::vector<Budget> out;
  for (absl::string_view raw : absl::StrSplit(text, ',')) {
    const absl::string_view entry = absl::StripAsciiWhitespace(raw);
    if (entry.empty()) return BadBudget(raw, "empty entry");
    Budget b;
    absl::string_view spec = entry;
    if (const size_t at = entry.rfind('@'); at != absl::string_view::npos) {
      spec = entry.substr(0, at);
      int weight = 0;
      if (!absl::SimpleAtoi(entry.substr(at + 1), &weight) || weight < 1 || weight > kMaxBudgetWeight) {
        return BadBudget(entry, absl::StrCat("weight must be an integer in 1..", kMaxBudgetWeight));
      }
      b.weight = weight;
    }
    const size_t colon = spec.find(':');
    if (colon == absl::string_view::npos) return BadBudget(entry, "no kind");
    const std::string kind = absl::AsciiStrToLower(absl::StripAsciiWhitespace(spec.substr(0, colon)));
    const absl::string_view value = absl::StripAsciiWhitespace(spec.substr(colon + 1));
    if (kind == "ratio") {
      b.kind = Budget::Kind::kRatio;
      // !(r > 0 && r <= 1) also rejects NaN, which SimpleAtod accepts.
      if (!absl::SimpleAtod(value, &b.ratio) || !(b.ratio > 0 && b.ratio <= 1)) {
        return BadBudget(entry, "ratio must be a number in (0, 1]");
      }
    } else if (kind == "bytes") {
      b.kind = Budget::Kind::kBytes;
      auto bytes = client::ParseByteSize(value);
      if (!bytes.ok()) return BadBudget(entry, bytes.status().message(), /*hint=*/false);
      if (*bytes == 0) return BadBudget(entry, "size must be > 0");
      b.bytes = *bytes;
    } else if (kind == "gaussians") {
      b.kind = Budget::Kind::kGaussians;
      if (!absl::SimpleAtoi(value, &b.gaussians) || b.gaussians == 0) {
        return BadBudget(entry, "Gaussian count must be a positive integer");
      }
    } else {
      return BadBudget(entry, absl::StrCat("unknown kind '", kind, "'"));
    }
    b.label = absl::StrCat(kind, ":", value);
    out.push_back(std::move(b));
  }
  if (out.empty()) return BadBudget(text, "no budgets");
  return out;
}

std::vector<int> WeightedCycle(const std::vector<Budget>& budgets) {
  // Smooth WRR: every step each entry gains its weight, the largest current value is
  // picked and pays back the total. Over sum(weights) steps entry i is picked exactly
  // weight_i times and the picks interleave (5,1,1 gives a a b a c a a).
  int total = 0;
  for (const auto& b : budgets) total += b.weight;
  std::vector<int> current(budgets.size(), 0), cycle;
  cycle.reserve(static_cast<size_t>(total));
  for (int step = 0; step < total; ++step) {
    size_t best = 0;
    for (size_t i = 0; i < budgets.size(); ++i) {
      current[i] += budgets[i].weight;
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total;
    cycle.push_back(static_cast<int>(best));
  }
  return cycle;
}

absl::StatusOr<std::vector<std::string>> ParseSceneList(const std::vector<std::string>& values) {
  std::vector<std::string> scenes;
  for (const auto& v : values) {
    for (absl::string_view item : absl::StrSplit(v, ',')) {
      item = absl::StripAsciiWhitespace(item);
      if (item.empty()) return absl::InvalidArgumentError(absl::StrCat("--scene '", v, "': empty scene id"));
      scenes.emplace_back(item);
    }
  }
  if (scenes.empty()) return absl::InvalidArgumentError("--scene is required (a scene id, repeatable or a comma list)");
  return scenes;
}

uint64_t StreamSeed(uint64_t seed, uint64_t stream_index) {
  // SplitMix64 of a combination that differs for every (seed, index) pair in practice.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + stream_index + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  k = std::clamp<size_t>(k, 1, sorted.size());
  return sorted[k - 1];
}

}  // namespace flexgs::loadgen
