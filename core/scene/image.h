// Image: interleaved float pixels (row-major, channels innermost), values in [0,1].
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flexgs {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<float> pixels;  // width * height * channels

  Image() = default;
  Image(int w, int h, int c = 3, float fill = 0.0f)
      : width(w), height(h), channels(c), pixels(static_cast<size_t>(w) * h * c, fill) {}

  float& at(int x, int y, int c) { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
  float at(int x, int y, int c) const { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }

  // 8-bit quantisation used for PNG output and 8-bit metrics: round(clamp(v,0,1)*255).
  std::vector<uint8_t> ToRgb8() const;
  static Image FromRgb8(const uint8_t* data, int width, int height, int channels);
};

// Parses a colour "r,g,b" with components in [0,1], or 0..255 integers when any
// component exceeds 1 (so "255,255,255" and "1,1,1" are both white).
absl::StatusOr<std::array<float, 3>> ParseRgbColor(const std::string& text);

// Resamples `image` to width x height by area averaging (each output pixel is the mean
// of the input area it covers), for comparing against renders at a reduced size.
Image ResizeArea(const Image& image, int width, int height);

// 3 channels: an RGBA image composited over `background`; RGB returned as is; gray expanded.
Image ToRgbOver(const Image& image, const std::array<float, 3>& background);

}  // namespace flexgs
