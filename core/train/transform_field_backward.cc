#include "train/transform_field_backward.h"

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "elastic/field_input.h"
#include "train/internal/block_reduce.h"

namespace flexgs {
namespace {

constexpr int kBlock = 256;                                       // Gaussians per MLP block, as the forward
constexpr size_t kPassGaussians = kReduceBlocksPerPass * kBlock;  // per-Gaussian scratch bound
constexpr float kMinQuatNorm = 1e-12f;                            // as ApplyTransformDeltas

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstWeights = Eigen::Map<const RowMajorMatrix>;
using ConstVector = Eigen::Map<const Eigen::VectorXf>;

// Shapes only (values are the caller's Validate()); `what` names the object in errors.
absl::Status CheckFieldShapes(const TransformFieldWeights& f, const char* what) {
  absl::Status s = f.config.Validate();
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", s.message()));
  if (f.levels.size() != f.config.multires.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", f.levels.size(), " levels, expected ", f.config.multires.size()));
  }
  for (size_t l = 0; l < f.levels.size(); ++l) {
    const HexPlaneLevel& level = f.levels[l];
    if (level.spatial_resolution != f.config.base_resolution * f.config.multires[l] ||
        level.ratio_resolution != f.config.ratio_resolution) {
      return absl::InvalidArgumentError(absl::StrCat(what, ".level", l, " resolution does not match its config"));
    }
    for (int p = 0; p < 6; ++p) {
      if (level.planes[p].size() != PlaneValues(f.config.channels, level, p)) {
        return absl::InvalidArgumentError(absl::StrCat(what, ".level", l, ".", kPlaneNames[p], " has ",
                                                       level.planes[p].size(), " values, expected ",
                                                       PlaneValues(f.config.channels, level, p)));
      }
    }
  }
  const int hidden = f.config.hidden;
  s = f.trunk.CheckShape(absl::StrCat(what, ".trunk"), f.config.feature_dim(), hidden);
  if (!s.ok()) return s;
  for (int h = 0; h < 3; ++h) {
    const std::string head = TransformFieldWeights::kHeadNames[h];
    s = f.fc1[h].CheckShape(absl::StrCat(what, ".fc1.", head), hidden, hidden);
    if (!s.ok()) return s;
    s = f.fc2[h].CheckShape(absl::StrCat(what, ".fc2.", head), hidden, TransformFieldWeights::kHeadOutputs[h]);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CheckSameShapes(const TransformFieldWeights& field, const TransformFieldWeights& grad) {
  absl::Status s = CheckFieldShapes(grad, "grad_field");
  if (!s.ok()) return s;
  const TransformFieldConfig &a = field.config, &b = grad.config;
  if (a.channels != b.channels || a.base_resolution != b.base_resolution || a.multires != b.multires ||
      a.ratio_resolution != b.ratio_resolution || a.hidden != b.hidden) {
    return absl::InvalidArgumentError("grad_field's config differs from the field's (use ZerosLike)");
  }
  return absl::OkStatus();
}

// Offsets of the MLP tensors in one flat gradient vector.
struct MlpLayout {
  size_t trunk_w, trunk_b, fc1_w[3], fc1_b[3], fc2_w[3], fc2_b[3], width;
  MlpLayout(int features, int hidden) {
    size_t o = 0;
    const size_t h = static_cast<size_t>(hidden);
    trunk_w = o;
    o += h * features;
    trunk_b = o;
    o += h;
    for (int k = 0; k < 3; ++k) {
      fc1_w[k] = o;
      o += h * h;
      fc1_b[k] = o;
      o += h;
      fc2_w[k] = o;
      o += h * TransformFieldWeights::kHeadOutputs[k];
      fc2_b[k] = o;
      o += TransformFieldWeights::kHeadOutputs[k];
    }
    width = o;
  }
};

struct Scratch {
  Eigen::MatrixXf features, trunk, d_trunk, d_features, grad_out, d_act;
  std::array<Eigen::MatrixXf, 3> act;
  std::vector<float> samples;  // per Gaussian: [level][plane][channel] sampled values
  std::vector<float> slopes;   // per Gaussian: [level][axis] du/dcoord
};

// What the steps of one TransformFieldBackward call share: its arguments, the field's
// sizes, and the forward's normalisation and lookup tables (computed by the same
// functions as EvalTransformField).
struct BackwardCall {
  const TransformFieldWeights& field;
  absl::Span<const float> positions;
  absl::Span<const float> grad_deltas;
  absl::Span<float> grad_positions;
  ThreadPool* pool;
  int levels, channels, features, hidden;
  size_t C;             // channels, as a size
  size_t per_gaussian;  // sampled values per Gaussian: levels * 6 * C
  FieldAxes axes;
  float ratio_coord;
  FieldTables tables;
};

// One pass of Gaussians [begin, end): per Gaussian, dL/d(every sampled value)
// [level][plane][channel] and the spatial axis samples [level][axis], for the scatter.
struct Pass {
  size_t begin = 0, end = 0;
  std::vector<float> d_samples;
  std::vector<AxisSample> axes;
};

// Runs fn(level, plane) for every plane of the field, one job each; a job owns what it
// writes, so the result does not depend on the thread count.
void ForEachPlane(const BackwardCall& call, const std::function<void(int, int)>& fn) {
  const size_t jobs = static_cast<size_t>(call.levels) * 6;
  auto run = [&](size_t b, size_t e, int) {
    for (size_t j = b; j < e; ++j) fn(static_cast<int>(j / 6), static_cast<int>(j % 6));
  };
  if (call.pool != nullptr) {
    call.pool->ParallelFor(jobs, 1, run);
  } else {
    run(0, jobs, 0);
  }
}

// Step 1, for the block of Gaussians [begin, begin + m): the forward's HexPlane features
// (s.features), keeping every sampled plane value (s.samples) and du/dcoord (s.slopes);
// the axis samples go to the pass.
void SampleFeatures(const BackwardCall& call, size_t begin, int m, Pass& pass, Scratch& s) {
  const int levels = call.levels;
  const size_t C = call.C;
  s.features.resize(call.features, m);
  s.samples.resize(static_cast<size_t>(m) * call.per_gaussian);
  s.slopes.resize(static_cast<size_t>(m) * levels * 3);
  for (int j = 0; j < m; ++j) {
    const size_t i = begin + j;
    const float* pos = &call.positions[3 * i];
    float coord[3];
    for (int d = 0; d < 3; ++d) coord[d] = FieldCoord(call.axes, d, pos[d]);
    float* feat = s.features.col(j).data();
    for (int l = 0; l < levels; ++l) {
      const int res = call.field.levels[l].spatial_resolution;
      AxisSample* axis = &pass.axes[((i - pass.begin) * levels + l) * 3];
      for (int d = 0; d < 3; ++d) axis[d] = SampleAxis(coord[d], res, &s.slopes[(j * levels + l) * 3 + d]);
      float* out = feat + l * call.channels;
      float* smp = &s.samples[(static_cast<size_t>(j) * levels + l) * 6 * C];
      for (int p = 0; p < 6; ++p) {
        const AxisSample& a = axis[kPlaneAxes[p][0]];
        const float* t = call.tables[l][p].data();
        float* v = smp + p * C;
        if (PlaneHasRatioAxis(p)) {
          const float* t0 = t + a.i0 * C;
          const float* t1 = t + a.i1 * C;
          for (size_t c = 0; c < C; ++c) v[c] = t0[c] * (1.0f - a.w) + t1[c] * a.w;
        } else {
          const AxisSample& b = axis[kPlaneAxes[p][1]];
          const TexelQuad<const float> q = BilinearTexels(t, a, b, static_cast<size_t>(res), C);
          const BilinearWeights w = Bilinear(a, b);
          for (size_t c = 0; c < C; ++c) {
            v[c] = q.t00[c] * w.w00 + q.t01[c] * w.w01 + q.t10[c] * w.w10 + q.t11[c] * w.w11;
          }
        }
        for (size_t c = 0; c < C; ++c) out[c] = p == 0 ? v[c] : out[c] * v[c];
      }
    }
  }
}

// Step 2: the MLP forward again -- trunk (its ReLU applied once: every head starts with
// one) and the heads' hidden layers -- and its backward from the block's dL/d(deltas).
// Adds the weight and bias gradients into `partial` (laid out by `layout`) and leaves
// dL/d(features) in s.d_features.
void MlpBackward(const BackwardCall& call, const MlpLayout& layout, size_t begin, int m, Scratch& s, float* partial) {
  const TransformFieldWeights& field = call.field;
  const int hidden = call.hidden;
  const ConstWeights trunk_w(field.trunk.weight.data(), hidden, call.features);
  s.trunk.resize(hidden, m);
  s.trunk.noalias() = trunk_w * s.features;
  s.trunk = (s.trunk.colwise() + ConstVector(field.trunk.bias.data(), hidden)).cwiseMax(0.0f);
  s.d_trunk.setZero(hidden, m);
  int offset = 0;
  for (int h = 0; h < 3; ++h) {
    const int k = TransformFieldWeights::kHeadOutputs[h];
    const ConstWeights w1(field.fc1[h].weight.data(), hidden, hidden);
    const ConstWeights w2(field.fc2[h].weight.data(), k, hidden);
    Eigen::MatrixXf& act = s.act[h];
    act.resize(hidden, m);
    act.noalias() = w1 * s.trunk;
    act = (act.colwise() + ConstVector(field.fc1[h].bias.data(), hidden)).cwiseMax(0.0f);
    s.grad_out.resize(k, m);
    for (int j = 0; j < m; ++j) {
      const float* g = &call.grad_deltas[(begin + j) * kDeltaStride + offset];
      for (int r = 0; r < k; ++r) s.grad_out(r, j) = g[r];
    }
    offset += k;
    AddToPartial(s.grad_out * act.transpose(), partial + layout.fc2_w[h]);
    AddToPartial(s.grad_out.rowwise().sum(), partial + layout.fc2_b[h]);
    s.d_act.noalias() = w2.transpose() * s.grad_out;
    s.d_act = (act.array() > 0.0f).select(s.d_act.array(), 0.0f).matrix();
    AddToPartial(s.d_act * s.trunk.transpose(), partial + layout.fc1_w[h]);
    AddToPartial(s.d_act.rowwise().sum(), partial + layout.fc1_b[h]);
    s.d_trunk.noalias() += w1.transpose() * s.d_act;
  }
  s.d_trunk = (s.trunk.array() > 0.0f).select(s.d_trunk.array(), 0.0f).matrix();
  AddToPartial(s.d_trunk * s.features.transpose(), partial + layout.trunk_w);
  AddToPartial(s.d_trunk.rowwise().sum(), partial + layout.trunk_b);
  s.d_features.noalias() = trunk_w.transpose() * s.d_trunk;
}

// Step 3: from dL/d(features), through each level's product over the planes to every
// sampled value (into the pass) and, when positions get a gradient, through the bilinear
// weights and the normalisation to the positions.
void FeatureBackward(const BackwardCall& call, size_t begin, int m, const Scratch& s, Pass& pass) {
  const int levels = call.levels;
  const size_t C = call.C;
  for (int j = 0; j < m; ++j) {
    const size_t i = begin + j;
    double d_coord[3] = {0.0, 0.0, 0.0};
    for (int l = 0; l < levels; ++l) {
      const float* smp = &s.samples[(static_cast<size_t>(j) * levels + l) * 6 * C];
      float* dsmp = &pass.d_samples[((i - pass.begin) * levels + l) * 6 * C];
      for (size_t c = 0; c < C; ++c) {
        // d(prod_p v_p)/dv_p = prod_{q != p} v_q, without dividing (values can be 0).
        float prefix[7], suffix[7];
        prefix[0] = 1.0f;
        suffix[6] = 1.0f;
        for (int p = 0; p < 6; ++p) prefix[p + 1] = prefix[p] * smp[p * C + c];
        for (int p = 5; p >= 0; --p) suffix[p] = suffix[p + 1] * smp[p * C + c];
        const float g = s.d_features(l * call.channels + static_cast<int>(c), j);
        for (int p = 0; p < 6; ++p) dsmp[p * C + c] = g * prefix[p] * suffix[p + 1];
      }
      if (call.grad_positions.empty()) continue;
      const AxisSample* axis = &pass.axes[((i - pass.begin) * levels + l) * 3];
      const size_t ra_spatial = static_cast<size_t>(call.field.levels[l].spatial_resolution);
      double d_w[3] = {0.0, 0.0, 0.0};  // dL/d(bilinear weight) per spatial axis
      for (int p = 0; p < 6; ++p) {
        const int ax_a = kPlaneAxes[p][0], ax_b = kPlaneAxes[p][1];
        const AxisSample& a = axis[ax_a];
        const float* t = call.tables[l][p].data();
        const float* ds = dsmp + p * C;
        if (PlaneHasRatioAxis(p)) {
          const float* t0 = t + a.i0 * C;
          const float* t1 = t + a.i1 * C;
          double acc_a = 0.0;
          for (size_t c = 0; c < C; ++c) acc_a += static_cast<double>(ds[c]) * (t1[c] - t0[c]);
          d_w[ax_a] += acc_a;
        } else {
          const AxisSample& b = axis[ax_b];
          const TexelQuad<const float> q = BilinearTexels(t, a, b, ra_spatial, C);
          double acc_a = 0.0, acc_b = 0.0;
          for (size_t c = 0; c < C; ++c) {
            acc_a += static_cast<double>(ds[c]) * ((1.0f - b.w) * (q.t01[c] - q.t00[c]) + b.w * (q.t11[c] - q.t10[c]));
            acc_b += static_cast<double>(ds[c]) * ((1.0f - a.w) * (q.t10[c] - q.t00[c]) + a.w * (q.t11[c] - q.t01[c]));
          }
          d_w[ax_a] += acc_a;
          d_w[ax_b] += acc_b;
        }
      }
      for (int d = 0; d < 3; ++d) d_coord[d] += d_w[d] * s.slopes[(j * levels + l) * 3 + d];
    }
    if (!call.grad_positions.empty()) {
      for (int d = 0; d < 3; ++d) {
        if (call.axes.ok[d]) call.grad_positions[3 * i + d] += static_cast<float>(d_coord[d] * call.axes.scale[d]);
      }
    }
  }
}

// Step 4, per pass: the sampled values' gradients into the tables' accumulators, one job
// per (level, plane), Gaussians in index order.
void ScatterPass(const BackwardCall& call, const Pass& pass, FieldTables& acc) {
  const int levels = call.levels;
  const size_t C = call.C;
  ForEachPlane(call, [&](int l, int p) {
    std::vector<float>& dst = acc[l][p];
    const size_t ra = static_cast<size_t>(call.field.levels[l].Resolution(kPlaneAxes[p][0]));
    for (size_t i = pass.begin; i < pass.end; ++i) {
      const AxisSample* axis = &pass.axes[((i - pass.begin) * levels + l) * 3];
      const AxisSample& a = axis[kPlaneAxes[p][0]];
      const float* ds = &pass.d_samples[((i - pass.begin) * levels + l) * 6 * C + p * C];
      if (PlaneHasRatioAxis(p)) {
        float* d0 = &dst[a.i0 * C];
        float* d1 = &dst[a.i1 * C];
        for (size_t c = 0; c < C; ++c) d0[c] += ds[c] * (1.0f - a.w);
        for (size_t c = 0; c < C; ++c) d1[c] += ds[c] * a.w;
      } else {
        const AxisSample& b = axis[kPlaneAxes[p][1]];
        const BilinearWeights w = Bilinear(a, b);
        const TexelQuad<float> d = BilinearTexels(dst.data(), a, b, ra, C);
        // Sequential adds (texels may coincide at a border).
        for (size_t c = 0; c < C; ++c) d.t00[c] += ds[c] * w.w00;
        for (size_t c = 0; c < C; ++c) d.t01[c] += ds[c] * w.w01;
        for (size_t c = 0; c < C; ++c) d.t10[c] += ds[c] * w.w10;
        for (size_t c = 0; c < C; ++c) d.t11[c] += ds[c] * w.w11;
      }
    }
  });
}

// Step 5: the accumulators back to the planes' [C, res_b, res_a] layout, the adjoint of
// BuildFieldTables: a ratio line's gradient goes to the two ratio rows it was
// interpolated from.
void AddTablesToPlanes(const BackwardCall& call, const FieldTables& acc, TransformFieldWeights* grad_field) {
  const size_t C = call.C;
  ForEachPlane(call, [&](int l, int p) {
    const HexPlaneLevel& level = call.field.levels[l];
    const size_t ra = static_cast<size_t>(level.Resolution(kPlaneAxes[p][0]));
    const size_t rb = static_cast<size_t>(level.Resolution(kPlaneAxes[p][1]));
    const std::vector<float>& src = acc[l][p];
    float* dst = grad_field->levels[l].planes[p].data();
    if (PlaneHasRatioAxis(p)) {
      const AxisSample e = SampleAxis(call.ratio_coord, level.ratio_resolution);
      for (size_t c = 0; c < C; ++c) {
        float* row0 = dst + (c * rb + e.i0) * ra;
        float* row1 = dst + (c * rb + e.i1) * ra;
        for (size_t a = 0; a < ra; ++a) row0[a] += src[a * C + c] * (1.0f - e.w);
        for (size_t a = 0; a < ra; ++a) row1[a] += src[a * C + c] * e.w;
      }
    } else {
      const size_t texels = ra * rb;
      for (size_t c = 0; c < C; ++c) {
        for (size_t t = 0; t < texels; ++t) dst[c * texels + t] += src[t * C + c];
      }
    }
  });
}

// Step 6: the MLP's gradients, summed over the blocks in double, into grad_field.
void AddMlpGradients(const MlpLayout& layout, const std::vector<double>& total, TransformFieldWeights* grad_field) {
  auto add = [&](std::vector<float>& dst, size_t offset) {
    for (size_t k = 0; k < dst.size(); ++k) dst[k] += static_cast<float>(total[offset + k]);
  };
  add(grad_field->trunk.weight, layout.trunk_w);
  add(grad_field->trunk.bias, layout.trunk_b);
  for (int h = 0; h < 3; ++h) {
    add(grad_field->fc1[h].weight, layout.fc1_w[h]);
    add(grad_field->fc1[h].bias, layout.fc1_b[h]);
    add(grad_field->fc2[h].weight, layout.fc2_w[h]);
    add(grad_field->fc2[h].bias, layout.fc2_b[h]);
  }
}

}  // namespace

TransformFieldWeights ZerosLike(const TransformFieldWeights& like) {
  TransformFieldWeights z;
  z.config = like.config;
  z.levels.resize(like.levels.size());
  for (size_t l = 0; l < like.levels.size(); ++l) {
    z.levels[l].spatial_resolution = like.levels[l].spatial_resolution;
    z.levels[l].ratio_resolution = like.levels[l].ratio_resolution;
    for (int p = 0; p < 6; ++p) z.levels[l].planes[p].assign(like.levels[l].planes[p].size(), 0.0f);
  }
  z.trunk = DenseLayer(like.trunk.in, like.trunk.out);
  for (int h = 0; h < 3; ++h) {
    z.fc1[h] = DenseLayer(like.fc1[h].in, like.fc1[h].out);
    z.fc2[h] = DenseLayer(like.fc2[h].in, like.fc2[h].out);
  }
  return z;
}

absl::Status ApplyTransformDeltasBackward(const GaussianCloud& input, absl::Span<const float> deltas,
                                          const TransformedGradients& grad_out, absl::Span<float> grad_deltas,
                                          const AttributeGradients& grad_inputs) {
  const size_t n = input.size();
  if (input.rotations.size() != 4 * n || deltas.size() != n * kDeltaStride || grad_deltas.size() != n * kDeltaStride ||
      grad_out.positions.size() != 3 * n || grad_out.log_scales.size() != 3 * n || grad_out.rotations.size() != 4 * n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ApplyTransformDeltasBackward: sizes do not match ", n, " Gaussians (rotations ", input.rotations.size(),
        ", deltas ", deltas.size(), ", grad_deltas ", grad_deltas.size(), ", grad_out ", grad_out.positions.size(), "/",
        grad_out.log_scales.size(), "/", grad_out.rotations.size(), ")"));
  }
  if ((!grad_inputs.positions.empty() && grad_inputs.positions.size() != 3 * n) ||
      (!grad_inputs.log_scales.empty() && grad_inputs.log_scales.size() != 3 * n) ||
      (!grad_inputs.rotations.empty() && grad_inputs.rotations.size() != 4 * n)) {
    return absl::InvalidArgumentError("ApplyTransformDeltasBackward: grad_inputs spans must be empty or 3N/3N/4N");
  }
  for (size_t i = 0; i < n; ++i) {
    const float* d = &deltas[i * kDeltaStride];
    float* gd = &grad_deltas[i * kDeltaStride];
    for (int k = 0; k < 3; ++k) {
      gd[k] = grad_out.positions[3 * i + k];       // position + dX
      gd[3 + k] = grad_out.log_scales[3 * i + k];  // log_scale + ds
      if (!grad_inputs.positions.empty()) grad_inputs.positions[3 * i + k] += grad_out.positions[3 * i + k];
      if (!grad_inputs.log_scales.empty()) grad_inputs.log_scales[3 * i + k] += grad_out.log_scales[3 * i + k];
    }
    // Recompute the forward's rotation exactly as ApplyTransformDeltas does (float).
    const float* q = &input.rotations[4 * i];
    float unit[4] = {1.0f, 0.0f, 0.0f, 0.0f};
    const float qn = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    const bool q_ok = qn > kMinQuatNorm && std::isfinite(qn);
    if (q_ok) {
      for (int k = 0; k < 4; ++k) unit[k] = q[k] / qn;
    }
    float sum[4];
    for (int k = 0; k < 4; ++k) sum[k] = unit[k] + d[6 + k];
    const float sn = std::sqrt(sum[0] * sum[0] + sum[1] * sum[1] + sum[2] * sum[2] + sum[3] * sum[3]);
    const bool sum_ok = sn > kMinQuatNorm && std::isfinite(sn);
    const float* gq = &grad_out.rotations[4 * i];
    double d_unit[4];
    if (sum_ok) {
      // q' = sum / |sum|: dL/dsum = (g - q' (q' . g)) / |sum|; sum = unit + dq.
      double out[4], dot = 0.0;
      for (int k = 0; k < 4; ++k) {
        out[k] = static_cast<double>(sum[k]) / sn;
        dot += out[k] * gq[k];
      }
      for (int k = 0; k < 4; ++k) {
        d_unit[k] = (gq[k] - out[k] * dot) / sn;
        gd[6 + k] = static_cast<float>(d_unit[k]);
      }
    } else {
      for (int k = 0; k < 4; ++k) {  // q' = unit: dq has no effect
        d_unit[k] = gq[k];
        gd[6 + k] = 0.0f;
      }
    }
    if (q_ok && !grad_inputs.rotations.empty()) {
      double dot = 0.0;
      for (int k = 0; k < 4; ++k) dot += unit[k] * d_unit[k];
      for (int k = 0; k < 4; ++k)
        grad_inputs.rotations[4 * i + k] += static_cast<float>((d_unit[k] - unit[k] * dot) / qn);
    }
  }
  return absl::OkStatus();
}

absl::Status TransformFieldBackward(const TransformFieldWeights& field, const FieldNormalization& norm,
                                    absl::Span<const float> positions, float ratio, absl::Span<const float> grad_deltas,
                                    TransformFieldWeights* grad_field, absl::Span<float> grad_positions,
                                    ThreadPool* pool) {
  if (grad_field == nullptr) return absl::InvalidArgumentError("TransformFieldBackward: grad_field is null");
  FLEXGS_RETURN_IF_ERROR(CheckFieldShapes(field, "field"));
  FLEXGS_RETURN_IF_ERROR(CheckSameShapes(field, *grad_field));
  const size_t n = positions.size() / 3;
  if (positions.size() % 3 != 0 || grad_deltas.size() != n * kDeltaStride ||
      (!grad_positions.empty() && grad_positions.size() != 3 * n)) {
    return absl::InvalidArgumentError(absl::StrCat("TransformFieldBackward: positions has ", positions.size(),
                                                   " values, grad_deltas ", grad_deltas.size(), ", grad_positions ",
                                                   grad_positions.size(), "; expected 3m, 10m, 0 or 3m"));
  }
  if (n == 0) return absl::OkStatus();

  const TransformFieldConfig& cfg = field.config;
  const int levels = static_cast<int>(field.levels.size());
  const size_t C = static_cast<size_t>(cfg.channels);
  const float ratio_coord = FieldRatioCoord(ratio, norm.ratio_scale, norm.ratio_offset);
  const BackwardCall call{field,
                          positions,
                          grad_deltas,
                          grad_positions,
                          pool,
                          levels,
                          cfg.channels,
                          cfg.feature_dim(),
                          cfg.hidden,
                          C,
                          static_cast<size_t>(levels) * 6 * C,
                          FieldInputAxes(norm.aabb_min.data(), norm.aabb_max.data()),
                          ratio_coord,
                          BuildFieldTables(field, ratio_coord, pool)};

  // Plane gradients in the tables' layouts, each owned by one (level, plane) job.
  FieldTables acc(levels);
  for (int l = 0; l < levels; ++l) {
    for (int p = 0; p < 6; ++p) acc[l][p].assign(call.tables[l][p].size(), 0.0f);
  }
  const MlpLayout layout(call.features, call.hidden);
  std::vector<double> mlp_total(layout.width, 0.0);
  std::vector<Scratch> scratch(pool != nullptr ? pool->size() : 1);
  Pass pass;
  const size_t pass_cap = std::min(n, kPassGaussians);
  pass.d_samples.resize(pass_cap * call.per_gaussian);
  pass.axes.resize(pass_cap * levels * 3);
  for (pass.begin = 0; pass.begin < n; pass.begin += kPassGaussians) {
    pass.end = std::min(n, pass.begin + kPassGaussians);
    auto block = [&](size_t begin, size_t end, int worker, float* partial) {
      Scratch& s = scratch[worker];
      const int m = static_cast<int>(end - begin);
      SampleFeatures(call, begin, m, pass, s);
      MlpBackward(call, layout, begin, m, s, partial);
      FeatureBackward(call, begin, m, s, pass);
    };
    ReduceBlocks(pool, pass.begin, pass.end, kBlock, layout.width, block, mlp_total.data());
    ScatterPass(call, pass, acc);
  }
  AddTablesToPlanes(call, acc, grad_field);
  AddMlpGradients(layout, mlp_total, grad_field);
  return absl::OkStatus();
}

absl::StatusOr<HexPlaneRegularizers> HexPlaneRegularization(const TransformFieldWeights& field,
                                                            const HexPlaneRegularizerWeights& weights,
                                                            TransformFieldWeights* grad_field, ThreadPool* pool) {
  absl::Status st = CheckFieldShapes(field, "field");
  if (!st.ok()) return st;
  if (grad_field != nullptr) {
    st = CheckSameShapes(field, *grad_field);
    if (!st.ok()) return st;
  }
  const int levels = static_cast<int>(field.levels.size());
  const size_t C = static_cast<size_t>(field.config.channels);
  // One job per (level, plane, channel): it owns that channel's slab of the gradient.
  struct Job {
    int l, p;
    size_t c;
  };
  std::vector<Job> jobs;
  for (int l = 0; l < levels; ++l) {
    for (int p = 0; p < 6; ++p) {
      for (size_t c = 0; c < C; ++c) jobs.push_back({l, p, c});
    }
  }
  std::vector<double> smooth(jobs.size(), 0.0), l1(jobs.size(), 0.0);  // per-job means' parts
  auto run = [&](size_t begin, size_t end, int) {
    for (size_t j = begin; j < end; ++j) {
      const auto [l, p, c] = jobs[j];
      const HexPlaneLevel& level = field.levels[l];
      const size_t ra = static_cast<size_t>(level.Resolution(kPlaneAxes[p][0]));
      const size_t rb = static_cast<size_t>(level.Resolution(kPlaneAxes[p][1]));
      const float* v = level.planes[p].data() + c * ra * rb;
      float* g = grad_field != nullptr ? grad_field->levels[l].planes[p].data() + c * ra * rb : nullptr;
      const bool ratio_plane = PlaneHasRatioAxis(p);
      const double smooth_weight = ratio_plane ? weights.time_smoothness : weights.plane_tv;
      if (rb >= 3) {
        const double count = static_cast<double>(C) * static_cast<double>(rb - 2) * static_cast<double>(ra);
        double sum = 0.0;
        for (size_t r = 0; r + 2 < rb; ++r) {
          for (size_t a = 0; a < ra; ++a) {
            const double d = static_cast<double>(v[(r + 2) * ra + a]) - 2.0 * v[(r + 1) * ra + a] + v[r * ra + a];
            sum += d * d;
            if (g != nullptr) {
              const double k = smooth_weight * 2.0 * d / count;
              g[r * ra + a] += static_cast<float>(k);
              g[(r + 1) * ra + a] += static_cast<float>(-2.0 * k);
              g[(r + 2) * ra + a] += static_cast<float>(k);
            }
          }
        }
        smooth[j] = sum / count;
      }
      if (ratio_plane) {
        const double count = static_cast<double>(C) * static_cast<double>(rb) * static_cast<double>(ra);
        double sum = 0.0;
        for (size_t t = 0; t < ra * rb; ++t) {
          const double x = static_cast<double>(v[t]) - 1.0;
          sum += std::abs(x);
          if (g != nullptr && x != 0.0)
            g[t] += static_cast<float>(weights.l1_time_planes * (x > 0 ? 1.0 : -1.0) / count);
        }
        l1[j] = sum / count;
      }
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(jobs.size(), 1, run);
  } else {
    run(0, jobs.size(), 0);
  }
  HexPlaneRegularizers r;
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (PlaneHasRatioAxis(jobs[j].p)) {
      r.ratio_smooth += smooth[j];
      r.ratio_l1 += l1[j];
    } else {
      r.space += smooth[j];
    }
  }
  r.value = weights.plane_tv * r.space + weights.time_smoothness * r.ratio_smooth + weights.l1_time_planes * r.ratio_l1;
  return r;
}

}  // namespace flexgs
