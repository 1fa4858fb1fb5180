#include "train/adam.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/byte_io.h"
#include "base/crc32c.h"

namespace flexgs {
namespace {

constexpr char kMagic[8] = {'F', 'G', 'S', 'A', 'D', 'A', 'M', '1'};

uint64_t Bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof(u));
  return u;
}

}  // namespace

double LrSchedule::At(int64_t step) const {
  if (step < 0 || (lr_init == 0.0 && lr_final == 0.0)) return 0.0;
  if (lr_init == lr_final && delay_steps <= 0) return lr_init;
  double delay_rate = 1.0;
  if (delay_steps > 0) {
    const double x = std::clamp(static_cast<double>(step) / static_cast<double>(delay_steps), 0.0, 1.0);
    delay_rate = delay_mult + (1.0 - delay_mult) * std::sin(0.5 * M_PI * x);
  }
  const double t = std::clamp(static_cast<double>(step) / static_cast<double>(max_steps), 0.0, 1.0);
  return delay_rate * std::exp(std::log(lr_init) * (1.0 - t) + std::log(lr_final) * t);
}

absl::Status LrSchedule::Validate() const {
  if (!(lr_init >= 0.0) || !(lr_final >= 0.0) || !std::isfinite(lr_init) || !std::isfinite(lr_final)) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning rates must be finite and >= 0, got ", lr_init, " -> ", lr_final));
  }
  if ((lr_init == 0.0) != (lr_final == 0.0)) {
    return absl::InvalidArgumentError("a log-linear schedule cannot start or end at 0 unless both ends are 0");
  }
  if (max_steps <= 0 || delay_steps < 0 || !std::isfinite(delay_mult)) {
    return absl::InvalidArgumentError(absl::StrCat("bad schedule: max_steps ", max_steps, ", delay_steps ", delay_steps,
                                                   ", delay_mult ", delay_mult));
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, LrSchedule>> ReferenceStage2Groups(double s, double net) {
  constexpr int64_t kMaxSteps = 20000;  // position_lr_max_steps
  constexpr double kDelayMult = 0.01;   // unused: delay steps are 0 in the reference
  if (net < 0.0) net = s;
  return {
      {"xyz", LrSchedule::Exponential(1.6e-4 * s, 1.6e-6 * s, kMaxSteps, 0, kDelayMult)},
      {"deformation", LrSchedule::Exponential(1.6e-4 * net, 1.6e-5 * net, kMaxSteps, 0, kDelayMult)},
      {"deformation_world", LrSchedule::Exponential(1.6e-4 * s, 1.6e-5 * s, kMaxSteps, 0, kDelayMult)},
      {"grid", LrSchedule::Exponential(1.6e-3 * net, 1.6e-4 * net, kMaxSteps, 0, kDelayMult)},
      {"gumbel", LrSchedule::Exponential(1.6e-4 * net, 1.6e-5 * net, kMaxSteps, 0, kDelayMult)},
      {"f_dc", LrSchedule::Constant(2.5e-3)},
      {"f_rest", LrSchedule::Constant(2.5e-3 / 20.0)},
      {"opacity", LrSchedule::Constant(0.05)},
      {"scaling", LrSchedule::Constant(5e-3)},
      {"rotation", LrSchedule::Constant(1e-3)},
  };
}

absl::Status Adam::AddGroup(const std::string& group, const LrSchedule& schedule) {
  absl::Status s = schedule.Validate();
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("group '", group, "': ", s.message()));
  if (!groups_.emplace(group, schedule).second) {
    return absl::AlreadyExistsError(absl::StrCat("Adam group '", group, "' already exists"));
  }
  return absl::OkStatus();
}

absl::Status Adam::AddParameter(const std::string& group, const std::string& name, size_t size) {
  if (groups_.count(group) == 0) return absl::NotFoundError(absl::StrCat("Adam group '", group, "' does not exist"));
  if (name.empty()) return absl::InvalidArgumentError("Adam parameter name is empty");
  Param p;
  p.group = group;
  p.m.assign(size, 0.0f);
  p.v.assign(size, 0.0f);
  if (!params_.emplace(name, std::move(p)).second) {
    return absl::AlreadyExistsError(absl::StrCat("Adam parameter '", name, "' already exists"));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Adam::LearningRate(const std::string& group, int64_t iteration) const {
  auto it = groups_.find(group);
  if (it == groups_.end()) return absl::NotFoundError(absl::StrCat("Adam group '", group, "' does not exist"));
  return it->second.At(iteration);
}

absl::StatusOr<int64_t> Adam::StepCount(const std::string& name) const {
  auto it = params_.find(name);
  if (it == params_.end()) return absl::NotFoundError(absl::StrCat("Adam parameter '", name, "' does not exist"));
  return it->second.step;
}

absl::Status Adam::Step(const std::string& name, absl::Span<float> param, absl::Span<const float> grad,
                        int64_t iteration, ThreadPool* pool) {
  auto it = params_.find(name);
  if (it == params_.end()) return absl::NotFoundError(absl::StrCat("Adam parameter '", name, "' does not exist"));
  Param& p = it->second;
  if (param.size() != p.m.size() || grad.size() != p.m.size()) {
    return absl::InvalidArgumentError(absl::StrCat("Adam parameter '", name, "' has ", p.m.size(),
                                                   " values; got param ", param.size(), ", grad ", grad.size()));
  }
  const double lr = groups_.at(p.group).At(iteration);
  ++p.step;
  // Scalars as torch computes them (Python floats), then used in float32 arithmetic.
  const double bias1 = 1.0 - std::pow(options_.beta1, static_cast<double>(p.step));
  const double bias2 = 1.0 - std::pow(options_.beta2, static_cast<double>(p.step));
  const float beta1 = static_cast<float>(options_.beta1), beta2 = static_cast<float>(options_.beta2);
  const float one_minus_beta1 = static_cast<float>(1.0 - options_.beta1);
  const float one_minus_beta2 = static_cast<float>(1.0 - options_.beta2);
  const float neg_step_size = static_cast<float>(-(lr / bias1));
  const float bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  const float eps = static_cast<float>(options_.eps);
  float* m_all = p.m.data();
  float* v_all = p.v.data();
  float* param_all = param.data();
  const float* grad_all = grad.data();
  // One code path for every element whatever the thread count: identical rounding.
  // The four arrays never overlap; saying so (__restrict) lets the compiler vectorise.
  auto update = [&](size_t begin, size_t end, int /*worker*/) {
    float* __restrict m = m_all + begin;
    float* __restrict v = v_all + begin;
    float* __restrict x = param_all + begin;
    const float* __restrict gr = grad_all + begin;
    const size_t count = end - begin;
    for (size_t i = 0; i < count; ++i) {
      const float g = gr[i];
      m[i] = m[i] * beta1 + g * one_minus_beta1;
      v[i] = v[i] * beta2 + one_minus_beta2 * g * g;
      const float denom = std::sqrt(v[i]) / bias2_sqrt + eps;
      x[i] = x[i] + neg_step_size * (m[i] / denom);
    }
  };
  constexpr size_t kGrain = 1 << 15;
  if (pool != nullptr) {
    pool->ParallelFor(param.size(), kGrain, update);
  } else {
    update(0, param.size(), 0);
  }
  return absl::OkStatus();
}

std::string Adam::SaveState() const {
  std::string out(kMagic, sizeof(kMagic));
  ByteWriter w(&out);
  w.Put(Bits(options_.beta1));
  w.Put(Bits(options_.beta2));
  w.Put(Bits(options_.eps));
  w.Put(static_cast<uint64_t>(params_.size()));
  for (const auto& [name, p] : params_) {
    w.Put(static_cast<uint64_t>(name.size()));
    w.PutBytes(name);
    w.Put(static_cast<uint64_t>(p.m.size()));
    w.Put(p.step);
    w.PutFloats(p.m);
    w.PutFloats(p.v);
  }
  w.Put(Crc32c(absl::string_view(out.data(), out.size())));
  return out;
}

absl::Status Adam::LoadState(std::string_view bytes) {
  auto damaged = [](const std::string& why) { return absl::InvalidArgumentError("Adam state: " + why); };
  if (bytes.size() < sizeof(kMagic) + sizeof(uint32_t) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return damaged("not an Adam state (bad magic or too short)");
  }
  const std::string_view body = bytes.substr(0, bytes.size() - sizeof(uint32_t));
  uint32_t crc = 0;
  ByteReader tail(bytes.substr(body.size()));
  if (!tail.Get(&crc) || crc != Crc32c(absl::string_view(body.data(), body.size())))
    return damaged("CRC-32C mismatch (corrupt or truncated)");

  ByteReader r(body.substr(sizeof(kMagic)));
  uint64_t beta1, beta2, eps, count;
  if (!r.Get(&beta1) || !r.Get(&beta2) || !r.Get(&eps) || !r.Get(&count)) return damaged("truncated header");
  if (beta1 != Bits(options_.beta1) || beta2 != Bits(options_.beta2) || eps != Bits(options_.eps)) {
    return absl::FailedPreconditionError("Adam state was saved with different betas or eps");
  }
  if (count != params_.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("Adam state has ", count, " parameters, this optimiser has ", params_.size()));
  }
  std::map<std::string, Param> restored;
  for (uint64_t k = 0; k < count; ++k) {
    uint64_t name_size, size;
    std::string_view name;
    int64_t step;
    if (!r.Get(&name_size) || name_size > r.remaining() || !r.Bytes(name_size, &name) || !r.Get(&size) ||
        !r.Get(&step)) {
      return damaged(absl::StrCat("truncated entry ", k));
    }
    const std::string key(name);
    auto it = params_.find(key);
    if (it == params_.end()) {
      return absl::FailedPreconditionError(absl::StrCat("Adam state has unknown parameter '", key, "'"));
    }
    if (size != it->second.m.size()) {
      return absl::FailedPreconditionError(
          absl::StrCat("Adam state has ", size, " values for '", key, "', this optimiser ", it->second.m.size()));
    }
    if (step < 0) return damaged(absl::StrCat("negative step count for '", key, "'"));
    Param p;
    p.group = it->second.group;
    p.step = step;
    if (!r.Floats(size, &p.m) || !r.Floats(size, &p.v))
      return damaged(absl::StrCat("truncated moments of '", key, "'"));
    restored.emplace(key, std::move(p));
  }
  if (r.remaining() != 0) return damaged("trailing bytes");
  if (restored.size() != params_.size()) return damaged("duplicate parameter names");
  params_ = std::move(restored);
  return absl::OkStatus();
}

}  // namespace flexgs
