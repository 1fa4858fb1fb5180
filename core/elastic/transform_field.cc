#include "elastic/transform_field.h"

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/random.h"

namespace flexgs {
namespace {

// Sanity limits: far above the reference config (C=16, 64..256 x 150, width 64), low
// enough that sizes cannot overflow and the CUDA kernels' register tiles cover `hidden`.
constexpr int kMaxChannels = 256;
constexpr int kMaxLevels = 8;
constexpr int kMaxResolution = 8192;
constexpr int kMaxHidden = 256;
constexpr int64_t kMaxPlaneValues = (int64_t{1} << 31) - 1;  // CUDA indexes within a plane with int32

// Gaussians per block for the batched MLP (see gsnet.cc: blocks are grain-aligned, so
// results do not depend on the thread count).
constexpr int kBlock = 256;

// Same threshold as the rasterizer's quaternion normalisation (core/render/raster_math.h).
constexpr float kMinQuatNorm = 1e-12f;

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstWeights = Eigen::Map<const RowMajorMatrix>;
using ConstVector = Eigen::Map<const Eigen::VectorXf>;

std::string PlaneName(int l, int p) { return absl::StrCat("field.level", l, ".", kPlaneNames[p]); }

// Xavier-uniform weight (gain 1), PyTorch-default bias.
DenseLayer XavierLinear(int in, int out, SplitMix64& rng) {
  DenseLayer layer(in, out);
  const double w_bound = std::sqrt(6.0 / static_cast<double>(in + out));
  const double b_bound = 1.0 / std::sqrt(static_cast<double>(in));
  for (float& w : layer.weight) w = static_cast<float>(rng.Uniform(-w_bound, w_bound));
  for (float& b : layer.bias) b = static_cast<float>(rng.Uniform(-b_bound, b_bound));
  return layer;
}

void CheckOrDie(bool ok, const char* fn, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "%s: precondition failed: %s\n", fn, what);
    std::abort();
  }
}

struct Scratch {
  Eigen::MatrixXf features, trunk, act, out;
};

}  // namespace

absl::Status TransformFieldConfig::Validate() const {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("transform field config: ", what));
  };
  if (channels < 1 || channels > kMaxChannels) {
    return bad(absl::StrCat("channels = ", channels, ", expected 1..", kMaxChannels));
  }
  if (multires.empty() || multires.size() > static_cast<size_t>(kMaxLevels)) {
    return bad(absl::StrCat("multires has ", multires.size(), " levels, expected 1..", kMaxLevels));
  }
  if (base_resolution < 1) return bad(absl::StrCat("base_resolution = ", base_resolution, ", expected >= 1"));
  if (ratio_resolution < 1 || ratio_resolution > kMaxResolution) {
    return bad(absl::StrCat("ratio_resolution = ", ratio_resolution, ", expected 1..", kMaxResolution));
  }
  for (size_t l = 0; l < multires.size(); ++l) {
    const int64_t res = static_cast<int64_t>(base_resolution) * multires[l];
    if (multires[l] < 1 || res > kMaxResolution) {
      return bad(absl::StrCat("level ", l, " resolution ", base_resolution, " x ", multires[l], " outside 1..",
                              kMaxResolution));
    }
    const int64_t widest = std::max<int64_t>(res, ratio_resolution);
    if (int64_t{channels} * res * widest > kMaxPlaneValues) {
      return bad(absl::StrCat("level ", l, " planes exceed ", kMaxPlaneValues, " values"));
    }
  }
  if (hidden < 1 || hidden > kMaxHidden) return bad(absl::StrCat("hidden = ", hidden, ", expected 1..", kMaxHidden));
  return absl::OkStatus();
}

TransformFieldWeights TransformFieldWeights::Init(const TransformFieldConfig& config, uint64_t seed) {
  SplitMix64 rng(seed);
  TransformFieldWeights f;
  f.config = config;
  for (int m : config.multires) {
    HexPlaneLevel level;
    level.spatial_resolution = config.base_resolution * m;
    level.ratio_resolution = config.ratio_resolution;
    for (int p = 0; p < 6; ++p) {
      std::vector<float>& plane = level.planes[p];
      plane.resize(PlaneValues(config.channels, level, p));
      if (PlaneHasRatioAxis(p)) {
        // Ratio planes start at 1 so the product over planes is initially the spatial
        // features alone (reference HexPlaneField init).
        std::fill(plane.begin(), plane.end(), 1.0f);
      } else {
        for (float& v : plane) v = static_cast<float>(rng.Uniform(0.1, 0.5));
      }
    }
    f.levels.push_back(std::move(level));
  }
  f.trunk = XavierLinear(config.feature_dim(), config.hidden, rng);
  for (int h = 0; h < 3; ++h) {
    f.fc1[h] = XavierLinear(config.hidden, config.hidden, rng);
    // Zero last layer (weights and bias): an untrained field is the identity transform.
    f.fc2[h] = DenseLayer(config.hidden, kHeadOutputs[h]);
  }
  return f;
}

absl::Status TransformFieldWeights::Validate() const {
  absl::Status s = config.Validate();
  if (!s.ok()) return s;
  if (levels.size() != config.multires.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field has ", levels.size(), " levels, expected ", config.multires.size()));
  }
  for (size_t l = 0; l < levels.size(); ++l) {
    const HexPlaneLevel& level = levels[l];
    const int spatial = config.base_resolution * config.multires[l];
    if (level.spatial_resolution != spatial || level.ratio_resolution != config.ratio_resolution) {
      return absl::InvalidArgumentError(absl::StrCat("field.level", l, " has resolution ", level.spatial_resolution,
                                                     " (ratio ", level.ratio_resolution, "), expected ", spatial,
                                                     " (ratio ", config.ratio_resolution, ")"));
    }
    for (int p = 0; p < 6; ++p) {
      const std::vector<float>& plane = level.planes[p];
      const int ra = level.Resolution(kPlaneAxes[p][0]);
      const int rb = level.Resolution(kPlaneAxes[p][1]);
      const size_t expected = PlaneValues(config.channels, level, p);
      if (plane.size() != expected) {
        return absl::InvalidArgumentError(absl::StrCat(PlaneName(l, p), " has ", plane.size(), " values, expected ",
                                                       expected, " (shape [", config.channels, ", ", rb, ", ", ra,
                                                       "])"));
      }
      for (size_t i = 0; i < plane.size(); ++i) {
        if (!std::isfinite(plane[i])) {
          return absl::InvalidArgumentError(absl::StrCat(PlaneName(l, p), " contains a non-finite value at index ", i));
        }
      }
    }
  }
  s = trunk.Validate("field.trunk", config.feature_dim(), config.hidden);
  if (!s.ok()) return s;
  for (int h = 0; h < 3; ++h) {
    const std::string head = kHeadNames[h];
    s = fc1[h].Validate("field.fc1." + head, config.hidden, config.hidden);
    if (!s.ok()) return s;
    s = fc2[h].Validate("field.fc2." + head, config.hidden, kHeadOutputs[h]);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

void EvalTransformField(const TransformFieldWeights& field, const FieldNormalization& norm,
                        absl::Span<const float> positions, float ratio, absl::Span<float> deltas, ThreadPool* pool) {
  constexpr const char* kFn = "EvalTransformField";
  const TransformFieldConfig& cfg = field.config;
  const size_t n = positions.size() / 3;
  CheckOrDie(positions.size() % 3 == 0, kFn, "positions.size() is not a multiple of 3");
  CheckOrDie(deltas.size() == n * kDeltaStride, kFn, "deltas.size() != 10 * number of positions");
  // Cheap shape checks only (values are the caller's Validate()): enough to make an
  // out-of-bounds read impossible.
  const int levels = static_cast<int>(field.levels.size());
  const int channels = cfg.channels;
  const int features = cfg.feature_dim();
  const int hidden = cfg.hidden;
  CheckOrDie(levels == static_cast<int>(cfg.multires.size()) && channels >= 1 && hidden >= 1, kFn,
             "field does not match its config (call Validate() first)");
  for (const HexPlaneLevel& level : field.levels) {
    for (int p = 0; p < 6; ++p) {
      CheckOrDie(level.Resolution(0) >= 1 && level.Resolution(3) >= 1 &&
                     level.planes[p].size() == PlaneValues(channels, level, p),
                 kFn, "plane size does not match its level (call Validate() first)");
    }
  }
  CheckOrDie(field.trunk.in == features && field.trunk.out == hidden &&
                 field.trunk.weight.size() == static_cast<size_t>(features) * hidden &&
                 field.trunk.bias.size() == static_cast<size_t>(hidden),
             kFn, "trunk has the wrong shape (call Validate() first)");
  for (int h = 0; h < 3; ++h) {
    const int k = TransformFieldWeights::kHeadOutputs[h];
    CheckOrDie(field.fc1[h].weight.size() == static_cast<size_t>(hidden) * hidden &&
                   field.fc1[h].bias.size() == static_cast<size_t>(hidden) &&
                   field.fc2[h].weight.size() == static_cast<size_t>(k) * hidden &&
                   field.fc2[h].bias.size() == static_cast<size_t>(k),
               kFn, "head has the wrong shape (call Validate() first)");
  }
  if (n == 0) return;

  const FieldAxes axes = FieldInputAxes(norm.aabb_min.data(), norm.aabb_max.data());
  // Channel-last tables (see BuildFieldTables): about 8x fewer cache lines per lookup than
  // the planes' [C, res_b, res_a] layout. On the reference config this halves the cost for
  // 150k Gaussians; the price is one pass over the planes per call (~20 ms on one core),
  // which a caller evaluating only a few thousand Gaussians pays in full.
  const FieldTables tables = BuildFieldTables(field, FieldRatioCoord(ratio, norm.ratio_scale, norm.ratio_offset), pool);
  const size_t C = static_cast<size_t>(channels);

  std::vector<Scratch> scratch(pool != nullptr ? pool->size() : 1);
  auto run_block = [&](size_t begin, size_t end, int worker) {
    const int m = static_cast<int>(end - begin);
    Scratch& s = scratch[worker];
    s.features.resize(features, m);

    // (1) HexPlane features, one column per Gaussian: per level, the product over the
    // planes in kPlaneAxes order.
    for (int j = 0; j < m; ++j) {
      const float* pos = &positions[3 * (begin + j)];
      float coord[3];
      for (int d = 0; d < 3; ++d) coord[d] = FieldCoord(axes, d, pos[d]);
      float* feat = s.features.col(j).data();
      for (int l = 0; l < levels; ++l) {
        const int res = field.levels[l].spatial_resolution;
        AxisSample axis[3];
        for (int d = 0; d < 3; ++d) axis[d] = SampleAxis(coord[d], res);
        float* out = feat + l * channels;
        for (int p = 0; p < 6; ++p) {
          const AxisSample& a = axis[kPlaneAxes[p][0]];
          const float* t = tables[l][p].data();
          float* __restrict o = out;
          if (PlaneHasRatioAxis(p)) {
            const float* t0 = t + a.i0 * C;
            const float* t1 = t + a.i1 * C;
            const float w0 = 1.0f - a.w, w1 = a.w;
            for (size_t c = 0; c < C; ++c) o[c] *= t0[c] * w0 + t1[c] * w1;
            continue;
          }
          const AxisSample& b = axis[kPlaneAxes[p][1]];
          const TexelQuad<const float> q = BilinearTexels(t, a, b, static_cast<size_t>(res), C);
          const BilinearWeights w = Bilinear(a, b);
          if (p == 0) {
            for (size_t c = 0; c < C; ++c) {
              o[c] = q.t00[c] * w.w00 + q.t01[c] * w.w01 + q.t10[c] * w.w10 + q.t11[c] * w.w11;
            }
          } else {
            for (size_t c = 0; c < C; ++c) {
              o[c] *= q.t00[c] * w.w00 + q.t01[c] * w.w01 + q.t10[c] * w.w10 + q.t11[c] * w.w11;
            }
          }
        }
      }
    }

    // (2) Trunk (no activation); every head starts with a ReLU, so apply it once.
    s.trunk.resize(hidden, m);
    s.trunk.noalias() = ConstWeights(field.trunk.weight.data(), hidden, features) * s.features;
    s.trunk = (s.trunk.colwise() + ConstVector(field.trunk.bias.data(), hidden)).cwiseMax(0.0f);

    // (3) Heads: Linear -> ReLU -> Linear.
    int offset = 0;
    for (int h = 0; h < 3; ++h) {
      const int k = TransformFieldWeights::kHeadOutputs[h];
      s.act.resize(hidden, m);
      s.act.noalias() = ConstWeights(field.fc1[h].weight.data(), hidden, hidden) * s.trunk;
      s.act = (s.act.colwise() + ConstVector(field.fc1[h].bias.data(), hidden)).cwiseMax(0.0f);
      s.out.resize(k, m);
      s.out.noalias() = ConstWeights(field.fc2[h].weight.data(), k, hidden) * s.act;
      s.out.colwise() += ConstVector(field.fc2[h].bias.data(), k);
      for (int j = 0; j < m; ++j) {
        float* d = &deltas[(begin + j) * kDeltaStride + offset];
        for (int r = 0; r < k; ++r) d[r] = s.out(r, j);
      }
      offset += k;
    }
  };

  if (pool != nullptr) {
    pool->ParallelFor(n, kBlock, run_block);
  } else {
    for (size_t b = 0; b < n; b += kBlock) run_block(b, std::min(n, b + kBlock), 0);
  }
}

FieldTables BuildFieldTables(const TransformFieldWeights& field, float ratio_coord, ThreadPool* pool) {
  const int levels = static_cast<int>(field.levels.size());
  const size_t C = static_cast<size_t>(field.config.channels);
  FieldTables tables(levels);
  std::vector<std::pair<int, int>> jobs;  // (level, plane)
  for (int l = 0; l < levels; ++l) {
    for (int p = 0; p < 6; ++p) jobs.emplace_back(l, p);
  }
  auto build = [&](size_t job) {
    const auto [l, p] = jobs[job];
    const HexPlaneLevel& level = field.levels[l];
    const size_t ra = static_cast<size_t>(level.Resolution(kPlaneAxes[p][0]));
    const size_t rb = static_cast<size_t>(level.Resolution(kPlaneAxes[p][1]));
    const float* src = level.planes[p].data();
    std::vector<float>& dst = tables[l][p];
    if (PlaneHasRatioAxis(p)) {
      const AxisSample e = SampleAxis(ratio_coord, level.ratio_resolution);
      dst.resize(ra * C);
      for (size_t c = 0; c < C; ++c) {
        const float* row0 = src + (c * rb + e.i0) * ra;
        const float* row1 = src + (c * rb + e.i1) * ra;
        for (size_t a = 0; a < ra; ++a) dst[a * C + c] = row0[a] * (1.0f - e.w) + row1[a] * e.w;
      }
    } else {
      // Texel-major loop: contiguous writes, C sequential read streams.
      const size_t texels = ra * rb;
      dst.resize(texels * C);
      float* out = dst.data();
      for (size_t i = 0; i < texels; ++i, out += C) {
        for (size_t c = 0; c < C; ++c) out[c] = src[c * texels + i];
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(jobs.size(), 1, [&](size_t b, size_t e, int) {
      for (size_t job = b; job < e; ++job) build(job);
    });
  } else {
    for (size_t job = 0; job < jobs.size(); ++job) build(job);
  }
  return tables;
}

void ApplyTransformDeltas(absl::Span<const float> deltas, GaussianCloud& cloud) {
  const size_t n = cloud.size();
  CheckOrDie(deltas.size() == n * kDeltaStride, "ApplyTransformDeltas", "deltas.size() != 10 * cloud.size()");
  CheckOrDie(cloud.positions.size() == 3 * n && cloud.log_scales.size() == 3 * n && cloud.rotations.size() == 4 * n,
             "ApplyTransformDeltas", "cloud attribute arrays do not match cloud.size()");
  for (size_t i = 0; i < n; ++i) {
    const float* d = &deltas[i * kDeltaStride];
    float* pos = &cloud.positions[3 * i];
    float* log_scale = &cloud.log_scales[3 * i];
    float* q = &cloud.rotations[4 * i];
    for (int k = 0; k < 3; ++k) {
      pos[k] += d[k];
      log_scale[k] += d[3 + k];
    }
    float unit[4] = {1.0f, 0.0f, 0.0f, 0.0f};
    const float qn = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    if (qn > kMinQuatNorm && std::isfinite(qn)) {
      for (int k = 0; k < 4; ++k) unit[k] = q[k] / qn;
    }
    float sum[4];
    for (int k = 0; k < 4; ++k) sum[k] = unit[k] + d[6 + k];
    const float sn = std::sqrt(sum[0] * sum[0] + sum[1] * sum[1] + sum[2] * sum[2] + sum[3] * sum[3]);
    // A delta that cancels the rotation has no direction to keep; stay at the input.
    const bool ok = sn > kMinQuatNorm && std::isfinite(sn);
    for (int k = 0; k < 4; ++k) q[k] = ok ? sum[k] / sn : unit[k];
  }
}

FieldNormalization ExtentNormalization(const GaussianCloud& cloud) {
  FieldNormalization n;
  if (cloud.empty()) return n;
  n.aabb_min = {INFINITY, INFINITY, INFINITY};
  n.aabb_max = {-INFINITY, -INFINITY, -INFINITY};
  for (size_t i = 0; i < cloud.size(); ++i) {
    for (int d = 0; d < 3; ++d) {
      n.aabb_min[d] = std::min(n.aabb_min[d], cloud.positions[i * 3 + d]);
      n.aabb_max[d] = std::max(n.aabb_max[d], cloud.positions[i * 3 + d]);
    }
  }
  for (int d = 0; d < 3; ++d) {
    if (!(n.aabb_min[d] < n.aabb_max[d])) {
      n.aabb_min[d] -= 0.5f;
      n.aabb_max[d] += 0.5f;
    }
  }
  return n;
}

}  // namespace flexgs
