// Adam over named parameter groups with the reference's learning-rate schedules and a
// serialisable state for bit-identical resume.
//
// Update (torch.optim.Adam as the reference runs it: no weight decay, no amsgrad), per
// element in float32 like torch's float tensors, with the bias corrections in double:
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;  t = steps taken
//   p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Defaults are torch's betas (0.9, 0.999) and the reference's eps = 1e-15.
//
// Learning rates come from the parameter's group schedule at the caller's iteration
// (LrSchedule::At = 3DGS/FlexGS get_expon_lr_func), the way the reference's
// update_learning_rate(iteration) sets them before each step. Each parameter keeps its
// own step count for the bias correction (torch keeps one per tensor).
//
// Where this differs from the reference and why: a schedule with lr_init == lr_final and
// no delay returns lr_init exactly (the reference's constant groups never go through
// exp(log(lr)), which can be 1 ulp off). Elementwise float rounding may differ from
// torch's kernels in the last bit (FMA contraction); it is identical for any thread count.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/thread_pool.h"

namespace flexgs {

// get_expon_lr_func(lr_init, lr_final, lr_delay_steps, lr_delay_mult, max_steps):
// log-linear from lr_init (step 0) to lr_final (step >= max_steps), times a delay factor
// delay_mult + (1 - delay_mult) sin(pi/2 clamp(step / delay_steps, 0, 1)) when
// delay_steps > 0; 0 for step < 0 or when both rates are 0.
struct LrSchedule {
  double lr_init = 0.0;
  double lr_final = 0.0;
  int64_t delay_steps = 0;
  double delay_mult = 1.0;
  int64_t max_steps = 1000000;

  static LrSchedule Constant(double lr) { return {lr, lr, 0, 1.0, 1}; }
  static LrSchedule Exponential(double lr_init, double lr_final, int64_t max_steps, int64_t delay_steps = 0,
                                double delay_mult = 1.0) {
    return {lr_init, lr_final, delay_steps, delay_mult, max_steps};
  }
  double At(int64_t step) const;
  absl::Status Validate() const;  // finite, non-negative rates; max_steps > 0; delay_steps >= 0
};

// The reference's stage-2 groups (reference notes section 5.2) with their schedules; the
// rates that the reference scales by spatial_lr_scale (scene radius) are scaled here:
// xyz, deformation (field MLP), grid (HexPlane), gumbel (GsNet), f_dc, f_rest, opacity,
// scaling (log-scale), rotation.
//
// `network_lr_scale` (default: spatial_lr_scale, as the reference) scales the networks'
// groups (deformation, grid, gumbel) separately: the reference's rates assume a scene a
// few units across, and scaled by the radius of a scene hundreds of units across they
// blow the networks up in a few steps. "deformation_world" (the field's position head
// output layer, whose output is a world-space offset) stays on spatial_lr_scale.
std::vector<std::pair<std::string, LrSchedule>> ReferenceStage2Groups(double spatial_lr_scale,
                                                                      double network_lr_scale = -1.0);

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-15;
};

// Thread-compatible. Parameters are referred to by name; their storage stays the
// caller's (only the moments live here).
class Adam {
 public:
  explicit Adam(const AdamOptions& options = {}) : options_(options) {}

  // Errors: AlreadyExists for a repeated name, InvalidArgument for a bad schedule.
  absl::Status AddGroup(const std::string& group, const LrSchedule& schedule);
  // Registers a parameter of `size` floats in an existing group (NotFound otherwise).
  absl::Status AddParameter(const std::string& group, const std::string& name, size_t size);

  absl::StatusOr<double> LearningRate(const std::string& group, int64_t iteration) const;

  // One update of parameter `name` (param and grad of its registered size) with its
  // group's learning rate at `iteration`. Multi-threaded over elements on `pool`.
  absl::Status Step(const std::string& name, absl::Span<float> param, absl::Span<const float> grad, int64_t iteration,
                    ThreadPool* pool = nullptr);

  absl::StatusOr<int64_t> StepCount(const std::string& name) const;
  const AdamOptions& options() const { return options_; }

  // The optimiser state (options, and per parameter: name, size, step count, m, v) as a
  // little-endian binary blob ending in a CRC-32C. Schedules and groups are
  // configuration, not state: the resuming trainer registers them again.
  std::string SaveState() const;
  // Restores a SaveState blob into an Adam with the same parameters (names and sizes)
  // and options; InvalidArgument for a damaged blob, FailedPrecondition for a mismatch.
  // Nothing changes unless it succeeds.
  absl::Status LoadState(std::string_view bytes);

 private:
  struct Param {
    std::string group;
    int64_t step = 0;
    std::vector<float> m, v;
  };
  AdamOptions options_;
  std::map<std::string, LrSchedule> groups_;
  std::map<std::string, Param> params_;  // ordered: deterministic serialisation
};

}  // namespace flexgs
