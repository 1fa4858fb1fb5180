#include "elastic/dense_layer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace flexgs {

absl::Status DenseLayer::CheckShape(absl::string_view name, int in_features, int out_features) const {
  if (in != in_features || out != out_features) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".weight has shape [", out, ", ", in, "], expected [",
                                                   out_features, ", ", in_features, "]"));
  }
  const size_t expected = static_cast<size_t>(out) * static_cast<size_t>(in);
  if (weight.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(name, ".weight has ", weight.size(), " values, expected ", expected,
                                                   " (shape [", out, ", ", in, "])"));
  }
  if (bias.size() != static_cast<size_t>(out)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ".bias has ", bias.size(), " values, expected ", out, " (shape [", out, "])"));
  }
  return absl::OkStatus();
}

absl::Status DenseLayer::Validate(absl::string_view name) const {
  if (in <= 0 || out <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " has shape [", out, ", ", in, "]; both dimensions must be positive"));
  }
  FLEXGS_RETURN_IF_ERROR(CheckShape(name, in, out));
  for (size_t i = 0; i < weight.size(); ++i) {
    if (!std::isfinite(weight[i])) {
      return absl::InvalidArgumentError(absl::StrCat(name, ".weight contains a non-finite value at index ", i));
    }
  }
  for (size_t i = 0; i < bias.size(); ++i) {
    if (!std::isfinite(bias[i])) {
      return absl::InvalidArgumentError(absl::StrCat(name, ".bias contains a non-finite value at index ", i));
    }
  }
  return absl::OkStatus();
}

absl::Status DenseLayer::Validate(absl::string_view name, int in_features, int out_features) const {
  FLEXGS_RETURN_IF_ERROR(CheckShape(name, in_features, out_features));
  return Validate(name);
}

}  // namespace flexgs
