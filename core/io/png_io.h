// PNG reading and writing for Image (libpng).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "scene/image.h"

namespace flexgs {

// Writes `image` as an 8-bit PNG quantised with Image::ToRgb8: 3 channels ->
// RGB, 4 -> RGBA (1 -> gray, 2 -> gray+alpha). The PNG is encoded in memory and
// written with WriteFileAtomically (base/file_io.h, whose errors it returns), so an
// error never leaves a partial file at `path`.
absl::Status WritePng(const std::string& path, const Image& image);

// Reads any 8- or 16-bit (or low-bit) PNG: gray, gray+alpha, RGB, RGBA or
// palette. The result has 3 channels, or 4 if the file has alpha (including
// tRNS transparency), with values in [0, 1]. Images larger than 32768 pixels
// per side are rejected.
absl::StatusOr<Image> ReadPng(const std::string& path);

}  // namespace flexgs
