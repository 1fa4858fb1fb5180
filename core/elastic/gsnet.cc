#include "elastic/gsnet.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "base/random.h"

namespace flexgs {
namespace {

constexpr int kHidden = GsNetWeights::kHidden;
constexpr int kConcat = 4 * kHidden;
// Gaussians per block: big enough for Eigen's GEMM kernels to reach full speed, small
// enough that a block's activations (32 x 256 floats per matrix) stay in L1/L2. Blocks
// start at multiples of kBlock whatever the thread count (ThreadPool hands out
// grain-aligned blocks), so results do not depend on the number of threads.
constexpr int kBlock = 256;

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstWeights = Eigen::Map<const RowMajorMatrix>;
using ConstVector = Eigen::Map<const Eigen::VectorXf>;
// Column-major, one Gaussian per column; fixed maximum sizes keep the per-block
// scratch on the stack (no allocation per block).
template <int kRows>
using BlockMatrix = Eigen::Matrix<float, kRows, Eigen::Dynamic, Eigen::ColMajor, kRows, kBlock>;

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

absl::Status CheckShape(const DenseLayer& layer, const std::string& name, int in, int out) {
  if (layer.in != in || layer.out != out) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ".weight has shape [", layer.out, ", ", layer.in, "], expected [", out, ", ", in, "]"));
  }
  return layer.Validate(name.c_str());
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
    absl::Status s = CheckShape(fc1[b], "gsnet.fc1." + branch, kInputs[b], kHidden);
    if (!s.ok()) return s;
    s = CheckShape(fc2[b], "gsnet.fc2." + branch, kHidden, kHidden);
    if (!s.ok()) return s;
  }
  return CheckShape(head, "gsnet.head", kConcat, 2);
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

  // The ratio branch sees the same input for every Gaussian, so its contribution to
  // the logits is a per-call constant: fold it into the head bias once.
  float r1[kHidden], r2[kHidden];
  net.fc1[3].Forward(&ratio, r1);
  for (float& v : r1) v = std::max(v, 0.0f);
  net.fc2[3].Forward(r1, r2);
  for (float& v : r2) v = std::max(v, 0.0f);
  Eigen::Vector2f base;
  for (int k = 0; k < 2; ++k) {
    const float* w = &net.head.weight[static_cast<size_t>(k) * kConcat + 3 * kHidden];
    float acc = net.head.bias[k];
    for (int j = 0; j < kHidden; ++j) acc += w[j] * r2[j];
    base[k] = acc;
  }

  const ConstWeights head(net.head.weight.data(), 2, kConcat);
  auto run_block = [&](size_t begin, size_t end, int /*worker*/) {
    const int m = static_cast<int>(end - begin);
    BlockMatrix<3> xyz(3, m), scale(3, m);
    BlockMatrix<4> quat(4, m);
    for (int j = 0; j < m; ++j) {
      const size_t i = begin + j;
      const float* p = &cloud.positions[3 * i];
      const float* s = &cloud.log_scales[3 * i];
      const float* q = &cloud.rotations[4 * i];
      for (int d = 0; d < 3; ++d) {
        xyz(d, j) = p[d];
        scale(d, j) = std::exp(s[d]);
      }
      // Same degenerate-quaternion rule as the rasterizer (core/render/raster_math.h), but a
      // degenerate quaternion becomes the identity rotation instead of being culled.
      const float qn = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
      if (qn > 1e-12f && std::isfinite(qn)) {
        for (int d = 0; d < 4; ++d) quat(d, j) = q[d] / qn;
      } else {
        quat.col(j) << 1.0f, 0.0f, 0.0f, 0.0f;
      }
    }

    BlockMatrix<2> logits(2, m);
    logits.colwise() = base;
    BlockMatrix<kHidden> h1(kHidden, m), h2(kHidden, m);
    for (int b = 0; b < 3; ++b) {
      const DenseLayer& l1 = net.fc1[b];
      const DenseLayer& l2 = net.fc2[b];
      const ConstWeights w1(l1.weight.data(), kHidden, l1.in);
      const ConstWeights w2(l2.weight.data(), kHidden, kHidden);
      if (b == 0) {
        h1.noalias() = w1 * xyz;
      } else if (b == 1) {
        h1.noalias() = w1 * quat;
      } else {
        h1.noalias() = w1 * scale;
      }
      h1 = (h1.colwise() + ConstVector(l1.bias.data(), kHidden)).cwiseMax(0.0f);
      h2.noalias() = w2 * h1;
      h2 = (h2.colwise() + ConstVector(l2.bias.data(), kHidden)).cwiseMax(0.0f);
      logits.noalias() += head.middleCols(b * kHidden, kHidden) * h2;
    }
    for (int j = 0; j < m; ++j) delta[begin + j] = logits(1, j) - logits(0, j);
  };

  if (pool != nullptr) {
    pool->ParallelFor(n, kBlock, run_block);
  } else {
    for (size_t b = 0; b < n; b += kBlock) run_block(b, std::min(n, b + kBlock), 0);
  }
}

}  // namespace flexgs
