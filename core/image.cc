#include "core/image.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace flexgs {

std::vector<uint8_t> Image::ToRgb8() const {
  std::vector<uint8_t> out(pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i) {
    float v = pixels[i];
    if (!(v > 0.0f)) v = 0.0f;  // also maps NaN to 0
    if (v > 1.0f) v = 1.0f;
    out[i] = static_cast<uint8_t>(std::lround(v * 255.0f));
  }
  return out;
}

Image Image::FromRgb8(const uint8_t* data, int width, int height, int channels) {
  Image img(width, height, channels);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = data[i] / 255.0f;
  return img;
}

absl::StatusOr<std::array<float, 3>> ParseRgbColor(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ',');
  if (parts.size() != 3) return absl::InvalidArgumentError(absl::StrCat("colour '", text, "' is not r,g,b"));
  std::array<float, 3> rgb;
  bool bytes = false;
  for (int i = 0; i < 3; ++i) {
    double v;
    if (!absl::SimpleAtod(parts[i], &v) || !(v >= 0) || v > 255) {
      return absl::InvalidArgumentError(absl::StrCat("colour component '", parts[i], "' is not in [0,1] or 0..255"));
    }
    rgb[i] = static_cast<float>(v);
    bytes |= v > 1.0;
  }
  if (bytes) for (float& v : rgb) v /= 255.0f;
  return rgb;
}

}  // namespace flexgs
