#include "stream/stream_budget.h"

#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_format.h"
#include "elastic/elastic_selection.h"
#include "scene/gaussian_cloud.h"
#include "stream/level_planner.h"

namespace flexgs {
namespace {

// Far beyond any client (1 PiB, 2^40 Gaussians), yet small enough that every
// product below stays exact in uint64 and every count exact in a double.
constexpr double kMaxMemoryBytes = 1125899906842624.0;  // 2^50
constexpr double kMaxGaussians = 1099511627776.0;       // 2^40

// The smallest ratio whose ElasticCount is `count` (count in 1..n). count / n alone
// can land one ulp low (e.g. 1/49 * 49 < 1), and the planner floors e * n, which
// would then hold one Gaussian fewer than the budget allows.
double RatioForCount(uint64_t count, uint64_t n) {
  if (count >= n) return 1.0;
  double e = static_cast<double>(count) / static_cast<double>(n);
  for (int i = 0; i < 8 && ElasticCount(n, e) < count; ++i) e = std::nextafter(e, 2.0);
  return e;
}

std::string Percent(double r) { return absl::StrFormat("%g%%", r * 100.0); }

}  // namespace

uint64_t ResidentBytesPerGaussian(int sh_degree) {
  return RawBytesPerGaussian(sh_degree) + kRenderOverheadBytesPerGaussian;
}

absl::StatusOr<BudgetDecision> DecideBudget(const Budget& budget, uint64_t model_gaussians, int sh_degree,
                                            const std::vector<double>& ladder) {
  if (model_gaussians == 0) return absl::InvalidArgumentError("the model has no Gaussians");
  if (model_gaussians > std::numeric_limits<uint32_t>::max()) {  // Plan and ElasticCount are 32-bit
    return absl::InvalidArgumentError(absl::StrFormat("model of %d Gaussians is too large", model_gaussians));
  }
  if (sh_degree < 0 || sh_degree > kMaxShDegree) {
    return absl::InvalidArgumentError(absl::StrFormat("SH degree %d is outside 0..%d", sh_degree, kMaxShDegree));
  }
  if (!ladder.empty() && !(ladder[0] > 0.0 && ladder[0] <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat("ladder rung %g is outside (0, 1]", ladder[0]));
  }
  const uint64_t n = model_gaussians;
  const uint64_t per = ResidentBytesPerGaussian(sh_degree);
  // The smallest level the stream can start with; a budget that cannot hold it is
  // not worth a stream.
  const uint64_t min_count = ladder.empty() ? 1 : ElasticCount(n, ladder[0]);
  const std::string min_level =
      ladder.empty() ? std::string("the smallest level (1 Gaussian)")
                     : absl::StrFormat("the smallest level (%s = %d Gaussians)", Percent(ladder[0]), min_count);
  const double v = budget.value;

  BudgetDecision d;
  switch (budget.kind) {
    case Budget::Kind::kMemoryBytes: {
      if (!(std::isfinite(v) && v > 0.0 && v <= kMaxMemoryBytes)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("memory budget of %g bytes is not a finite number in (0, 2^50]", v));
      }
      // floor(floor(v) / per) == floor(v / per) for integer per, and exact in uint64.
      const uint64_t bytes = static_cast<uint64_t>(v);
      const uint64_t count = bytes / per;
      if (count < min_count) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "budget of %d bytes holds %d Gaussians; %s needs at least %d bytes (%d bytes per Gaussian at SH "
            "degree %d)",
            bytes, count, min_level, min_count * per, per, sh_degree));
      }
      d.top_ratio = RatioForCount(count, n);
      break;
    }
    case Budget::Kind::kGaussians: {
      if (!(std::isfinite(v) && v >= 1.0 && v <= kMaxGaussians && v == std::floor(v))) {
        return absl::InvalidArgumentError(
            absl::StrFormat("Gaussian budget of %g is not a whole number in [1, 2^40]", v));
      }
      const uint64_t count = static_cast<uint64_t>(v);
      if (count < min_count) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "budget of %d Gaussians is too small; %s needs at least %d Gaussians", count, min_level, min_count));
      }
      d.top_ratio = RatioForCount(count, n);
      break;
    }
    case Budget::Kind::kRatio: {
      if (!(std::isfinite(v) && v > 0.0 && v <= 1.0)) {
        return absl::InvalidArgumentError(absl::StrFormat("ratio budget %g is outside (0, 1]", v));
      }
      const uint64_t count = ElasticCount(n, v);
      if (count < min_count) {
        return absl::FailedPreconditionError(
            absl::StrFormat("budget of ratio %g holds %d Gaussians; %s needs at least %d Gaussians (ratio %g)", v,
                            count, min_level, min_count, ladder[0]));
      }
      d.top_ratio = v;
      break;
    }
    default:
      return absl::InvalidArgumentError("unknown budget kind");
  }
  // Exactly what the planner will hold at the top level (it uses ElasticCount too).
  d.gaussians = ElasticCount(n, d.top_ratio);
  d.resident_bytes = d.gaussians * per;
  return d;
}

}  // namespace flexgs
