// DenseLayer: y = W x + b with W row-major [out x in], the building block of the
// small MLPs in GsNet and the transform field. Stored exactly like a PyTorch
// nn.Linear (weight [out, in], bias [out]) so tensors map 1:1 to safetensors.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace flexgs {

struct DenseLayer {
  int in = 0;
  int out = 0;
  std::vector<float> weight;  // out * in, row-major
  std::vector<float> bias;    // out

  DenseLayer() = default;
  DenseLayer(int in_features, int out_features)
      : in(in_features),
        out(out_features),
        weight(static_cast<size_t>(in_features) * out_features),
        bias(out_features) {}

  // y[0..out) = W x + b for one input vector x[0..in).
  void Forward(const float* x, float* y) const {
    for (int o = 0; o < out; ++o) {
      const float* w = &weight[static_cast<size_t>(o) * in];
      float acc = bias[o];
      for (int i = 0; i < in; ++i) acc += w[i] * x[i];
      y[o] = acc;
    }
  }

  // Checks that this is a Linear(in_features -> out_features): the dimensions, then the
  // sizes of weight and bias; values are not read. `name` (e.g. "gsnet.fc1.xyz") prefixes
  // the error. The one shape check of every layer: models' Validate and the backward
  // passes' checks of their gradient tensors.
  absl::Status CheckShape(absl::string_view name, int in_features, int out_features) const;

  // Checks that the dimensions are positive, weight and bias match them, and every value
  // is finite; `name` prefixes the error.
  absl::Status Validate(absl::string_view name) const;
  // CheckShape, then Validate: a layer of a model that must be Linear(in -> out).
  absl::Status Validate(absl::string_view name, int in_features, int out_features) const;
};

}  // namespace flexgs
