#include "scene/image.h"

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
  if (bytes)
    for (float& v : rgb) v /= 255.0f;
  return rgb;
}

Image ResizeArea(const Image& image, int width, int height) {
  Image out(width, height, image.channels);
  if (image.width <= 0 || image.height <= 0 || width <= 0 || height <= 0) return out;
  const double sx = static_cast<double>(image.width) / width;
  const double sy = static_cast<double>(image.height) / height;
  std::vector<double> acc(image.channels);
  for (int y = 0; y < height; ++y) {
    const double y0 = y * sy, y1 = (y + 1) * sy;
    for (int x = 0; x < width; ++x) {
      const double x0 = x * sx, x1 = (x + 1) * sx;
      std::fill(acc.begin(), acc.end(), 0.0);
      double total = 0;
      // Every source pixel overlapping [x0, x1) x [y0, y1), weighted by the overlap area.
      for (int iy = static_cast<int>(y0); iy < std::min(image.height, static_cast<int>(std::ceil(y1))); ++iy) {
        const double wy = std::min<double>(iy + 1, y1) - std::max<double>(iy, y0);
        if (wy <= 0) continue;
        for (int ix = static_cast<int>(x0); ix < std::min(image.width, static_cast<int>(std::ceil(x1))); ++ix) {
          const double w = wy * (std::min<double>(ix + 1, x1) - std::max<double>(ix, x0));
          if (w <= 0) continue;
          for (int c = 0; c < image.channels; ++c) acc[c] += w * image.at(ix, iy, c);
          total += w;
        }
      }
      for (int c = 0; c < image.channels; ++c) out.at(x, y, c) = static_cast<float>(total > 0 ? acc[c] / total : 0);
    }
  }
  return out;
}

Image ToRgbOver(const Image& image, const std::array<float, 3>& background) {
  if (image.channels == 3) return image;
  Image out(image.width, image.height, 3);
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      if (image.channels >= 3) {
        const float a = image.channels == 4 ? image.at(x, y, 3) : 1.0f;
        for (int c = 0; c < 3; ++c) out.at(x, y, c) = a * image.at(x, y, c) + (1.0f - a) * background[c];
      } else {
        const float a = image.channels == 2 ? image.at(x, y, 1) : 1.0f;
        for (int c = 0; c < 3; ++c) out.at(x, y, c) = a * image.at(x, y, 0) + (1.0f - a) * background[c];
      }
    }
  }
  return out;
}

}  // namespace flexgs
