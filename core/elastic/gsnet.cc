#include "elastic/gsnet.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "base/random.h"
#include "elastic/gsnet_block.h"

namespace flexgs {
namespace {

using gsnet_block::BlockMatrix;
using gsnet_block::kConcat;
using gsnet_block::kHidden;

// PyTorch's nn.Linear default: kaiming_uniform(a=sqrt(5)) for the weight, which is
// U(+-1/sqrt(fan_in)), and U(+-1/sqrt(fan_in)) for the bias. Weight first, then bias,
// the order PyTorch draws them in.
DenseLayer TorchDefaultLinear(int in, int out, SplitMix64& rng) {
  DenseLayer layer(in, out);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  for (float& w : layer.weight) w = static_cast<float>(rng.Uniform(-bound, bound));
  for (float& b : layer.bias) b = static_cast<float>(rng.Uniform(-bound, bound));
  return layer;
}

// The contract has no error channel (it is called per request on validated models),
// so a caller bug that would otherwise write out of bounds stops the process loudly.
void CheckOrDie(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "GsNetScores: precondition failed: %s\n", what);
    std::abort();
  }
}

}  // namespace

GsNetWeights GsNetWeights::Init(uint64_t seed) {
  SplitMix64 rng(seed);
  GsNetWeights net;
  for (int b = 0; b < 4; ++b) {
    net.fc1[b] = TorchDefaultLinear(kInputs[b], kHidden, rng);
    net.fc2[b] = TorchDefaultLinear(kHidden, kHidden, rng);
  }
  net.head = TorchDefaultLinear(kConcat, 2, rng);
  return net;
}

absl::Status GsNetWeights::Validate() const {
  for (int b = 0; b < 4; ++b) {
    const std::string branch = kBranchNames[b];
    absl::Status s = fc1[b].Validate("gsnet.fc1." + branch, kInputs[b], kHidden);
    if (!s.ok()) return s;
    s = fc2[b].Validate("gsnet.fc2." + branch, kHidden, kHidden);
    if (!s.ok()) return s;
  }
  return head.Validate("gsnet.head", kConcat, 2);
}

GsNetRatioBranch::GsNetRatioBranch(const GsNetWeights& net, float ratio) {
  net.fc1[3].Forward(&ratio, r1_pre);
  for (int j = 0; j < kHidden; ++j) r1[j] = std::max(r1_pre[j], 0.0f);
  net.fc2[3].Forward(r1, r2_pre);
  for (int j = 0; j < kHidden; ++j) r2[j] = std::max(r2_pre[j], 0.0f);
  for (int k = 0; k < 2; ++k) {
    const float* w = &net.head.weight[static_cast<size_t>(k) * kConcat + 3 * kHidden];
    float acc = net.head.bias[k];
    for (int j = 0; j < kHidden; ++j) acc += w[j] * r2[j];
    base[k] = acc;
  }
}

void GsNetScores(const GsNetWeights& net, const GaussianCloud& cloud, float ratio, absl::Span<float> delta,
                 ThreadPool* pool) {
  const size_t n = cloud.size();
  CheckOrDie(delta.size() == n, "delta.size() != cloud.size()");
  CheckOrDie(cloud.positions.size() == 3 * n && cloud.log_scales.size() == 3 * n && cloud.rotations.size() == 4 * n,
             "cloud attribute arrays do not match cloud.size()");
  for (int b = 0; b < 4; ++b) {
    CheckOrDie(net.fc1[b].in == GsNetWeights::kInputs[b] && net.fc1[b].out == kHidden &&
                   net.fc1[b].weight.size() == static_cast<size_t>(kHidden * GsNetWeights::kInputs[b]) &&
                   net.fc1[b].bias.size() == static_cast<size_t>(kHidden) &&
                   net.fc2[b].weight.size() == static_cast<size_t>(kHidden * kHidden) &&
                   net.fc2[b].bias.size() == static_cast<size_t>(kHidden),
               "GsNet branch has the wrong shape (call Validate() first)");
  }
  CheckOrDie(net.head.weight.size() == static_cast<size_t>(2 * kConcat) && net.head.bias.size() == 2,
             "GsNet head has the wrong shape (call Validate() first)");
  if (n == 0) return;

  // The ratio branch's constant contribution, folded into the head bias once.
  const GsNetRatioBranch ratio_branch(net, ratio);
  const Eigen::Vector2f base(ratio_branch.base[0], ratio_branch.base[1]);

  gsnet_block::ForEachBlock(pool, n, [&](size_t begin, size_t end, int /*worker*/) {
    const int m = static_cast<int>(end - begin);
    BlockMatrix<3> xyz(3, m), scale(3, m);
    BlockMatrix<4> quat(4, m);
    for (int j = 0; j < m; ++j) GsNetInputs(cloud, begin + j, &xyz(0, j), &quat(0, j), &scale(0, j));
    BlockMatrix<2> logits(2, m);
    gsnet_block::BlockLogits(net, base, xyz, quat, scale, logits);
    for (int j = 0; j < m; ++j) delta[begin + j] = logits(1, j) - logits(0, j);
  });
}

}  // namespace flexgs
