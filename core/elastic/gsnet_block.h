// GsNet's forward on a block of Gaussians held as Eigen matrices (one Gaussian per
// column), shared by GsNetScores (elastic/gsnet.h) and the trainer's logits and backward
// (train/gsnet_backward.h), so that every path evaluates one definition of a branch.
//
// Blocks start at multiples of kGsNetBlock whatever the thread count (ThreadPool hands
// out grain-aligned blocks), so results do not depend on the number of threads.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>

#include "base/thread_pool.h"
#include "elastic/gsnet.h"

namespace flexgs::gsnet_block {

inline constexpr int kHidden = GsNetWeights::kHidden;
inline constexpr int kConcat = 4 * kHidden;
// Gaussians per block: big enough for Eigen's GEMM kernels to reach full speed, small
// enough that a block's activations (32 x 256 floats per matrix) stay in L1/L2.
inline constexpr int kBlock = 256;

using RowMajorMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstWeights = Eigen::Map<const RowMajorMatrix>;
using ConstVector = Eigen::Map<const Eigen::VectorXf>;
// Column-major, one Gaussian per column; fixed maximum sizes keep the per-block
// scratch on the stack (no allocation per block).
template <int kRows>
using BlockMatrix = Eigen::Matrix<float, kRows, Eigen::Dynamic, Eigen::ColMajor, kRows, kBlock>;

// Calls fn(begin, end, worker) for the blocks of [0, n), on the pool when there is one.
template <typename Fn>
void ForEachBlock(ThreadPool* pool, size_t n, const Fn& fn) {
  if (pool != nullptr) {
    pool->ParallelFor(n, kBlock, fn);
  } else {
    for (size_t b = 0; b < n; b += kBlock) fn(b, std::min(n, b + kBlock), 0);
  }
}

// Per-Gaussian branch b (0 xyz, 1 rotation, 2 scale) on its inputs x (3 or 4 rows):
// h1 = relu(fc1 x + b1), h2 = relu(fc2 h1 + b2). The input's matrix type is the
// caller's (its GEMM kernel, and so its float summation order, goes with it).
template <typename Input>
void BranchForward(const GsNetWeights& net, int b, const Input& x, BlockMatrix<kHidden>& h1, BlockMatrix<kHidden>& h2) {
  const DenseLayer& l1 = net.fc1[b];
  const DenseLayer& l2 = net.fc2[b];
  h1.noalias() = ConstWeights(l1.weight.data(), kHidden, l1.in) * x;
  h1 = (h1.colwise() + ConstVector(l1.bias.data(), kHidden)).cwiseMax(0.0f);
  h2.noalias() = ConstWeights(l2.weight.data(), kHidden, kHidden) * h1;
  h2 = (h2.colwise() + ConstVector(l2.bias.data(), kHidden)).cwiseMax(0.0f);
}

// Logits (l0, l1) of a block, 2 x m: `base` (the ratio branch, GsNetRatioBranch) plus the
// head applied to the three per-Gaussian branches.
template <typename Xyz, typename Quat, typename Scale>
void BlockLogits(const GsNetWeights& net, const Eigen::Vector2f& base, const Xyz& xyz, const Quat& quat,
                 const Scale& scale, BlockMatrix<2>& logits) {
  const Eigen::Index m = xyz.cols();
  const ConstWeights head(net.head.weight.data(), 2, kConcat);
  logits.resize(2, m);
  logits.colwise() = base;
  BlockMatrix<kHidden> h1(kHidden, m), h2(kHidden, m);
  BranchForward(net, 0, xyz, h1, h2);
  logits.noalias() += head.middleCols(0 * kHidden, kHidden) * h2;
  BranchForward(net, 1, quat, h1, h2);
  logits.noalias() += head.middleCols(1 * kHidden, kHidden) * h2;
  BranchForward(net, 2, scale, h1, h2);
  logits.noalias() += head.middleCols(2 * kHidden, kHidden) * h2;
}

}  // namespace flexgs::gsnet_block
