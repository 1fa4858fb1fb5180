#include "train/gsnet_backward.h"

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "elastic/gsnet_block.h"
#include "train/internal/block_reduce.h"

namespace flexgs {
namespace {

using gsnet_block::BlockMatrix;
using gsnet_block::ConstWeights;
using gsnet_block::kBlock;
using gsnet_block::kConcat;
using gsnet_block::kHidden;
// Branch inputs have 3 or 4 rows.
using InputMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor, 4, kBlock>;

// The GsNet inputs of one block, one Gaussian per column.
struct BlockInputs {
  std::array<InputMatrix, 3> x;           // xyz, unit quaternion, exp(log_scale)
  std::array<float, kBlock> quat_norm{};  // |q|, 0 where the identity was substituted
};

void LoadInputs(const GaussianCloud& cloud, size_t begin, int m, BlockInputs& in) {
  in.x[0].resize(3, m);
  in.x[1].resize(4, m);
  in.x[2].resize(3, m);
  for (int j = 0; j < m; ++j) {
    in.quat_norm[j] = GsNetInputs(cloud, begin + j, &in.x[0](0, j), &in.x[1](0, j), &in.x[2](0, j));
  }
}

// Offsets of every tensor in one flat gradient vector, in the order of AllTensors:
// per branch fc1.weight, fc1.bias, fc2.weight, fc2.bias; then head.weight, head.bias.
struct Layout {
  size_t fc1_w[4], fc1_b[4], fc2_w[4], fc2_b[4], head_w, head_b, width;
  Layout() {
    size_t o = 0;
    for (int b = 0; b < 4; ++b) {
      fc1_w[b] = o;
      o += static_cast<size_t>(kHidden) * GsNetWeights::kInputs[b];
      fc1_b[b] = o;
      o += kHidden;
      fc2_w[b] = o;
      o += static_cast<size_t>(kHidden) * kHidden;
      fc2_b[b] = o;
      o += kHidden;
    }
    head_w = o;
    o += 2 * kConcat;
    head_b = o;
    o += 2;
    width = o;
  }
};

absl::Status CheckNetShapes(const GsNetWeights& net, const char* what) {
  for (int b = 0; b < 4; ++b) {
    const std::string branch = GsNetWeights::kBranchNames[b];
    absl::Status s = net.fc1[b].CheckShape(absl::StrCat(what, ".fc1.", branch), GsNetWeights::kInputs[b], kHidden);
    if (!s.ok()) return s;
    s = net.fc2[b].CheckShape(absl::StrCat(what, ".fc2.", branch), kHidden, kHidden);
    if (!s.ok()) return s;
  }
  return net.head.CheckShape(absl::StrCat(what, ".head"), kConcat, 2);
}

absl::Status CheckCloud(const GaussianCloud& cloud) {
  const size_t n = cloud.size();
  if (cloud.positions.size() != 3 * n || cloud.log_scales.size() != 3 * n || cloud.rotations.size() != 4 * n) {
    return absl::InvalidArgumentError("GsNet: cloud attribute arrays do not match cloud.size()");
  }
  return absl::OkStatus();
}

// What GsNetLogits and GsNetBackward both check: the net's shapes, the cloud's arrays
// and a span of logits (or their gradients), two values per Gaussian, named `what`.
absl::Status CheckCall(const GsNetWeights& net, const GaussianCloud& cloud, size_t logit_values, const char* what) {
  FLEXGS_RETURN_IF_ERROR(CheckNetShapes(net, "gsnet"));
  FLEXGS_RETURN_IF_ERROR(CheckCloud(cloud));
  if (logit_values != 2 * cloud.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", logit_values, " values, expected ", 2 * cloud.size()));
  }
  return absl::OkStatus();
}

absl::Status CheckSpan(size_t size, size_t n, int per, const char* name) {
  if (size != 0 && size != n * per) {
    return absl::InvalidArgumentError(
        absl::StrCat("GsNetBackward: grad_inputs.", name, " has ", size, " values, expected 0 or ", n * per));
  }
  return absl::OkStatus();
}

}  // namespace

GsNetWeights ZerosLike(const GsNetWeights& like) {
  GsNetWeights z;
  for (int b = 0; b < 4; ++b) {
    z.fc1[b] = DenseLayer(like.fc1[b].in, like.fc1[b].out);
    z.fc2[b] = DenseLayer(like.fc2[b].in, like.fc2[b].out);
  }
  z.head = DenseLayer(like.head.in, like.head.out);
  return z;
}

absl::Status GsNetLogits(const GsNetWeights& net, const GaussianCloud& cloud, float ratio, absl::Span<float> logits,
                         ThreadPool* pool) {
  FLEXGS_RETURN_IF_ERROR(CheckCall(net, cloud, logits.size(), "GsNetLogits: logits"));
  const size_t n = cloud.size();
  // As GsNetScores: the constant ratio branch folded into a base vector.
  const GsNetRatioBranch ratio_branch(net, ratio);
  const Eigen::Vector2f base(ratio_branch.base[0], ratio_branch.base[1]);
  gsnet_block::ForEachBlock(pool, n, [&](size_t begin, size_t end, int /*worker*/) {
    const int m = static_cast<int>(end - begin);
    BlockInputs in;
    LoadInputs(cloud, begin, m, in);
    BlockMatrix<2> out(2, m);
    gsnet_block::BlockLogits(net, base, in.x[0], in.x[1], in.x[2], out);
    for (int j = 0; j < m; ++j) {
      logits[2 * (begin + j)] = out(0, j);
      logits[2 * (begin + j) + 1] = out(1, j);
    }
  });
  return absl::OkStatus();
}

absl::Status GsNetBackward(const GsNetWeights& net, const GaussianCloud& cloud, float ratio,
                           absl::Span<const float> grad_logits, GsNetWeights* grad_net,
                           const AttributeGradients& grad_inputs, ThreadPool* pool) {
  if (grad_net == nullptr) return absl::InvalidArgumentError("GsNetBackward: grad_net is null");
  FLEXGS_RETURN_IF_ERROR(CheckCall(net, cloud, grad_logits.size(), "GsNetBackward: grad_logits"));
  FLEXGS_RETURN_IF_ERROR(CheckNetShapes(*grad_net, "grad_net"));
  const size_t n = cloud.size();
  for (const auto& [span, per, name] : {std::make_tuple(grad_inputs.positions.size(), 3, "positions"),
                                        std::make_tuple(grad_inputs.log_scales.size(), 3, "log_scales"),
                                        std::make_tuple(grad_inputs.rotations.size(), 4, "rotations")}) {
    FLEXGS_RETURN_IF_ERROR(CheckSpan(span, n, per, name));
  }
  const bool want_inputs =
      !grad_inputs.positions.empty() || !grad_inputs.log_scales.empty() || !grad_inputs.rotations.empty();

  static const Layout layout;
  std::vector<double> total(layout.width, 0.0);
  const ConstWeights head(net.head.weight.data(), 2, kConcat);

  // Per block: recompute the three per-Gaussian branches, then backpropagate
  // logits -> head -> fc2 -> fc1 -> inputs. The ratio branch is done once afterwards
  // from the summed logit gradients (its input is the same for every Gaussian).
  auto run_block = [&](size_t begin, size_t end, int /*worker*/, float* partial) {
    const int m = static_cast<int>(end - begin);
    BlockInputs in;
    LoadInputs(cloud, begin, m, in);
    BlockMatrix<2> g(2, m);
    for (int j = 0; j < m; ++j) {
      g(0, j) = grad_logits[2 * (begin + j)];
      g(1, j) = grad_logits[2 * (begin + j) + 1];
    }
    AddToPartial(g.rowwise().sum(), partial + layout.head_b);

    BlockMatrix<kHidden> h1(kHidden, m), h2(kHidden, m), d2(kHidden, m), d1(kHidden, m);
    InputMatrix dx;
    for (int b = 0; b < 3; ++b) {
      gsnet_block::BranchForward(net, b, in.x[b], h1, h2);
      const ConstWeights w1(net.fc1[b].weight.data(), kHidden, net.fc1[b].in);
      const ConstWeights w2(net.fc2[b].weight.data(), kHidden, kHidden);

      AddToPartial(g * h2.transpose(), partial + layout.head_w + b * kHidden, kConcat);
      d2.noalias() = head.middleCols(b * kHidden, kHidden).transpose() * g;
      d2 = (h2.array() > 0.0f).select(d2.array(), 0.0f).matrix();
      AddToPartial(d2 * h1.transpose(), partial + layout.fc2_w[b]);
      AddToPartial(d2.rowwise().sum(), partial + layout.fc2_b[b]);
      d1.noalias() = w2.transpose() * d2;
      d1 = (h1.array() > 0.0f).select(d1.array(), 0.0f).matrix();
      AddToPartial(d1 * in.x[b].transpose(), partial + layout.fc1_w[b]);
      AddToPartial(d1.rowwise().sum(), partial + layout.fc1_b[b]);
      if (!want_inputs) continue;

      dx.noalias() = w1.transpose() * d1;
      for (int j = 0; j < m; ++j) {
        const size_t i = begin + j;
        if (b == 0 && !grad_inputs.positions.empty()) {
          for (int k = 0; k < 3; ++k) grad_inputs.positions[3 * i + k] += dx(k, j);
        } else if (b == 1 && !grad_inputs.rotations.empty() && in.quat_norm[j] > 0.0f) {
          // u = q / |q|: dL/dq = (dL/du - u (u . dL/du)) / |q|.
          float dot = 0.0f;
          for (int k = 0; k < 4; ++k) dot += in.x[1](k, j) * dx(k, j);
          for (int k = 0; k < 4; ++k) {
            grad_inputs.rotations[4 * i + k] += (dx(k, j) - in.x[1](k, j) * dot) / in.quat_norm[j];
          }
        } else if (b == 2 && !grad_inputs.log_scales.empty()) {
          for (int k = 0; k < 3; ++k) grad_inputs.log_scales[3 * i + k] += dx(k, j) * in.x[2](k, j);
        }
      }
    }
  };
  ReduceBlocks(pool, 0, n, kBlock, layout.width, run_block, total.data());

  // Ratio branch: every logit gets head[:, 96:128] r2 + bias, so its gradient is the
  // sum over Gaussians of dL/dlogits, which is exactly the head-bias gradient.
  const GsNetRatioBranch rb(net, ratio);
  const double sum_g[2] = {total[layout.head_b], total[layout.head_b + 1]};
  double d2r[kHidden], d1r[kHidden];
  for (int j = 0; j < kHidden; ++j) {
    double acc = 0.0;
    for (int k = 0; k < 2; ++k) {
      total[layout.head_w + static_cast<size_t>(k) * kConcat + 3 * kHidden + j] += sum_g[k] * rb.r2[j];
      acc += static_cast<double>(net.head.weight[static_cast<size_t>(k) * kConcat + 3 * kHidden + j]) * sum_g[k];
    }
    d2r[j] = rb.r2_pre[j] > 0.0f ? acc : 0.0;
  }
  for (int j = 0; j < kHidden; ++j) {
    total[layout.fc2_b[3] + j] += d2r[j];
    for (int i = 0; i < kHidden; ++i)
      total[layout.fc2_w[3] + static_cast<size_t>(j) * kHidden + i] += d2r[j] * rb.r1[i];
  }
  for (int i = 0; i < kHidden; ++i) {
    double acc = 0.0;
    for (int j = 0; j < kHidden; ++j)
      acc += static_cast<double>(net.fc2[3].weight[static_cast<size_t>(j) * kHidden + i]) * d2r[j];
    d1r[i] = rb.r1_pre[i] > 0.0f ? acc : 0.0;
    total[layout.fc1_b[3] + i] += d1r[i];
    total[layout.fc1_w[3] + i] += d1r[i] * ratio;  // fc1.ratio has one input
  }

  auto add = [&](std::vector<float>& dst, size_t offset) {
    for (size_t k = 0; k < dst.size(); ++k) dst[k] += static_cast<float>(total[offset + k]);
  };
  for (int b = 0; b < 4; ++b) {
    add(grad_net->fc1[b].weight, layout.fc1_w[b]);
    add(grad_net->fc1[b].bias, layout.fc1_b[b]);
    add(grad_net->fc2[b].weight, layout.fc2_w[b]);
    add(grad_net->fc2[b].bias, layout.fc2_b[b]);
  }
  add(grad_net->head.weight, layout.head_w);
  add(grad_net->head.bias, layout.head_b);
  return absl::OkStatus();
}

}  // namespace flexgs
