// Decoder for SuperSplat / PlayCanvas "compressed PLY" Gaussian scenes.
//
// Layout (binary_little_endian): `element chunk` with one row of float bounds per
// 256 Gaussians (min/max position, min/max log-scale, optionally min/max colour),
// `element vertex` with four uint32 per Gaussian, and optionally `element sh` with
// uchar f_rest_0..f_rest_{9,24,44} per Gaussian:
//   packed_position  x:11 y:10 z:11 bits, unorm within the chunk's position bounds
//   packed_rotation  2-bit index of the largest |component| of (rot_0..rot_3), then
//                    the other three (in order) as 10-bit unorm of v*sqrt(2)/2 + 0.5
//   packed_scale     11-10-11 like position, within the chunk's log-scale bounds
//   packed_color     r:8 g:8 b:8 a:8; rgb = SH0-activated colour (0.5 + C0*f_dc),
//                    within the chunk's colour bounds when present; a = sigmoid(opacity)
//   sh f_rest_i      uchar q -> 8*(q/256 - 0.5) approximately (0 and 255 map to -4/+4)
// ParseGaussianPly detects these files and calls the decoder itself.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "io/ply_io.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

inline constexpr uint64_t kCompressedPlyChunkSize = 256;  // Gaussians per chunk row

// True when the header's vertex element has `packed_position`, i.e. the file is
// meant to be a compressed PLY (DecodeCompressedPly then validates the rest).
bool IsCompressedPly(const PlyHeader& header);

// Decodes a compressed PLY whose header is `header` and whose full file content is
// `bytes`. Activations are inverted exactly: f_dc = (colour - 0.5) / C0 and
// opacity = -log(1/a - 1), so a = 0 or 1 yields a -inf/+inf logit (left for
// SanitizeNonFinite). Errors: InvalidArgument for schema problems (missing or
// mistyped properties, chunk count != ceil(vertices / 256), bad sh element),
// DataLoss when the data is shorter than declared.
absl::StatusOr<GaussianCloud> DecodeCompressedPly(const PlyHeader& header, std::string_view bytes);

}  // namespace flexgs
