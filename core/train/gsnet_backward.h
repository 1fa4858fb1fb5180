// GsNet for training: the per-Gaussian logits (l0 = drop, l1 = keep) and their exact
// backward, to every weight and bias and to the Gaussian attributes GsNet reads.
//
// Inputs are those of the forward (core/elastic/gsnet.h) and of the reference: raw xyz,
// normalize(q), exp(log_scale) and the raw ratio e. The backward therefore returns
//   dL/dxyz directly, dL/dlog_scale = dL/dscale * exp(log_scale), and
//   dL/dq = (I - u u^T) / |q| * dL/du with u = q / |q|,
// so gradients reach the raw attributes the optimiser updates (the reference does not
// detach GsNet's inputs either). The ratio is a constant, not a parameter: its branch
// (fc1.ratio, fc2.ratio) gets gradients but no dL/de is produced.
//
// Where this differs from the reference and why: a quaternion with |q| <= 1e-12 (or a
// non-finite norm) is fed as the identity, as GsNetScores does, so it has no gradient;
// torch's F.normalize would feed the zero vector instead. Anything else is the same
// function. ReLU'(0) = 0, as in torch.
//
// Determinism: per-Gaussian work runs on the pool in 256-Gaussian blocks; weight
// gradients are summed per block and then over blocks in a fixed order
// (core/train/internal/block_reduce.h), so every output is bit-identical for any thread count.
// Activations are recomputed in the backward instead of being stored (1 KiB per
// Gaussian otherwise).
#pragma once

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "base/thread_pool.h"
#include "elastic/gsnet.h"
#include "scene/gaussian_cloud.h"
#include "train/attribute_gradients.h"

namespace flexgs {

// A zero-filled GsNetWeights with the shapes of `like`: the gradient buffer.
GsNetWeights ZerosLike(const GsNetWeights& like);

// logits[2i] = l0, logits[2i+1] = l1 for Gaussian i at ratio e (logits.size() = 2N).
// l1 - l0 equals GsNetScores' delta up to float rounding. InvalidArgument on shape
// mismatches (call net.Validate() for the values).
absl::Status GsNetLogits(const GsNetWeights& net, const GaussianCloud& cloud, float ratio, absl::Span<float> logits,
                         ThreadPool* pool);

// Given grad_logits = dL/d(l0, l1) per Gaussian (2N, the layout of GsNetLogits), ADDS
// dL/d(every weight and bias) into *grad_net (shaped like `net`, e.g. from ZerosLike)
// and dL/d(raw xyz, log_scale, rotation) into the non-empty spans of `grad_inputs`.
absl::Status GsNetBackward(const GsNetWeights& net, const GaussianCloud& cloud, float ratio,
                           absl::Span<const float> grad_logits, GsNetWeights* grad_net,
                           const AttributeGradients& grad_inputs, ThreadPool* pool);

}  // namespace flexgs
