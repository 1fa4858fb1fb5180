#include "core/image.h"

#include <algorithm>
#include <cmath>

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

}  // namespace flexgs
