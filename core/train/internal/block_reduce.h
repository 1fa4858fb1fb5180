// Deterministic parallel sums of per-block partials (the weight gradients of GsNet and
// the transform field's MLP, summed over Gaussians).
//
// Items [begin, end) are cut into blocks of `block` items starting at `begin`, so block
// boundaries depend only on the range, never on the thread count. Each block adds its
// contribution into its own zeroed float partial of `width` values; the partials are
// then added into `total` (double) in block order. The result is bit-identical for any
// number of threads (no atomics, no per-thread accumulators whose content would depend
// on how the pool happened to hand out blocks).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <functional>
#include <vector>

#include "base/thread_pool.h"

namespace flexgs {

// fn(block_begin, block_end, worker, partial) for every block; then total[j] += sum of
// partial[j] over blocks, in block order. Processes at most kReduceBlocksPerPass blocks
// at a time so the partials stay small (64 x width floats) whatever the item count.
inline constexpr size_t kReduceBlocksPerPass = 64;

inline void ReduceBlocks(ThreadPool* pool, size_t begin, size_t end, size_t block, size_t width,
                         const std::function<void(size_t, size_t, int, float*)>& fn, double* total) {
  if (end <= begin || width == 0) return;
  block = std::max<size_t>(1, block);
  std::vector<float> partials(kReduceBlocksPerPass * width);
  const size_t pass_items = kReduceBlocksPerPass * block;
  for (size_t pass = begin; pass < end; pass += pass_items) {
    const size_t count = std::min(end, pass + pass_items) - pass;
    const size_t blocks = (count + block - 1) / block;
    std::fill(partials.begin(), partials.begin() + blocks * width, 0.0f);
    auto run = [&](size_t b, size_t e, int worker) { fn(pass + b, pass + e, worker, &partials[(b / block) * width]); };
    if (pool != nullptr) {
      pool->ParallelFor(count, block, run);
    } else {
      for (size_t b = 0; b < count; b += block) run(b, std::min(count, b + block), 0);
    }
    for (size_t k = 0; k < blocks; ++k) {
      const float* p = &partials[k * width];
      for (size_t j = 0; j < width; ++j) total[j] += p[j];
    }
  }
}

// partial[r * row_stride + c] += value(r, c). `value` is first evaluated into an owned
// (aligned) matrix and then added element by element: Eigen splits a reduction such as
// rowwise().sum() into a scalar head and packets according to the DESTINATION's
// alignment, and partials are plain floats at arbitrary heap offsets, so evaluating into
// them directly made the rounding depend on where malloc put the buffer.
template <typename Derived>
void AddToPartial(const Eigen::MatrixBase<Derived>& value, float* partial, Eigen::Index row_stride = -1) {
  const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> v = value;
  if (row_stride < 0) row_stride = v.cols();
  for (Eigen::Index r = 0; r < v.rows(); ++r) {
    const float* src = v.data() + r * v.cols();
    float* dst = partial + r * row_stride;
    for (Eigen::Index c = 0; c < v.cols(); ++c) dst[c] += src[c];
  }
}

}  // namespace flexgs
