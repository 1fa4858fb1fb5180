// CUDA twins of GsNetScores (core/elastic/gsnet.h) and EvalTransformField
// (core/elastic/transform_field.h), in kernels/elastic_kernels.cu.
//
// Plain C++ header (no CUDA types) so host-compiled code can include it. The
// definitions exist only in builds with CUDA (FLEXGS_HAS_CUDA); check
// CudaAvailable() (kernels/backend.h) before use -- Create() fails cleanly otherwise.
//
// Results equal the CPU functions up to float summation order (same formulas, same
// degenerate-input rules); tests/unit/kernels/elastic_cuda_test.cc checks it.
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "elastic/gsnet.h"
#include "elastic/transform_field.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

// Keeps a GsNet, a transform field and the GsNet inputs of one cloud resident on the
// GPU between calls, so a ratio switch only uploads what changed (the kept positions)
// and downloads the results. Not thread-safe: use one evaluator per thread.
class CudaElasticEvaluator {
 public:
  // FAILED_PRECONDITION (with the reason) when no usable GPU is present.
  static absl::StatusOr<std::unique_ptr<CudaElasticEvaluator>> Create();
  ~CudaElasticEvaluator();
  CudaElasticEvaluator(const CudaElasticEvaluator&) = delete;
  CudaElasticEvaluator& operator=(const CudaElasticEvaluator&) = delete;

  // Validate() and upload; replace what was resident.
  absl::Status SetGsNet(const GsNetWeights& net);
  absl::Status SetField(const TransformFieldWeights& field);
  // Uploads position, log_scale and rotation of every Gaussian (the GsNet inputs).
  absl::Status SetCloud(const GaussianCloud& cloud);

  // GsNetScores for the resident cloud: delta.size() must equal its size.
  absl::Status Scores(float ratio, absl::Span<float> delta);
  // SetCloud(cloud) then Scores(ratio, delta).
  absl::Status Scores(const GaussianCloud& cloud, float ratio, absl::Span<float> delta);
  // EvalTransformField with the resident field.
  absl::Status EvalField(const FieldNormalization& norm, absl::Span<const float> positions, float ratio,
                         absl::Span<float> deltas);

 private:
  struct Impl;
  explicit CudaElasticEvaluator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One-shot conveniences (upload, run, download) with the CPU functions' contracts.
absl::Status CudaGsNetScores(const GsNetWeights& net, const GaussianCloud& cloud, float ratio, absl::Span<float> delta);
absl::Status CudaEvalTransformField(const TransformFieldWeights& field, const FieldNormalization& norm,
                                    absl::Span<const float> positions, float ratio, absl::Span<float> deltas);

}  // namespace flexgs
