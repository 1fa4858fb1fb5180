// Fuzz target: the SuperSplat/PlayCanvas compressed-PLY importer
// (DecodeCompressedPly, core/io/compressed_ply.h) behind ParsePlyHeader.
//
// Invariants of an accepted input: one Gaussian per vertex row, SH degree from the
// `sh` element (0 without it), f_rest values in [-4, 4], rotations finite, and
// ParseGaussianPly (which detects these files itself) returns the same bits.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_check.h"
#include "io/compressed_ply.h"
#include "io/ply_io.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  flexgs::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flexgs;
  using namespace flexgs::fuzz;
  // Small enough that no input of a few KiB can make one run slow or large.
  constexpr uint64_t kMaxVertices = uint64_t{1} << 16;
  const std::string_view bytes = Bytes(data, size);

  absl::StatusOr<PlyHeader> header = ParsePlyHeader(bytes);
  if (!header.ok() || !IsCompressedPly(*header)) return 0;
  const PlyElement* vertex = header->FindElement("vertex");
  FUZZ_CHECK(vertex != nullptr);
  if (vertex->count > kMaxVertices) return 0;
  absl::StatusOr<GaussianCloud> cloud = DecodeCompressedPly(*header, bytes);
  if (!cloud.ok()) return 0;

  FUZZ_CHECK(cloud->Validate().ok());
  FUZZ_CHECK(cloud->size() == vertex->count);
  const PlyElement* sh = header->FindElement("sh");
  if (sh == nullptr) {
    FUZZ_CHECK(cloud->sh_degree == 0);
  } else {
    FUZZ_CHECK(cloud->sh_degree >= 1 && cloud->sh_degree <= kMaxShDegree);
    FUZZ_CHECK(sh->properties.size() == 3 * static_cast<size_t>(cloud->rest_coeffs()));
  }
  for (float v : cloud->sh_rest) FUZZ_CHECK(v >= -4.0f && v <= 4.0f);
  FUZZ_CHECK(AllFinite(cloud->rotations));
  // The alpha byte decodes to a logit: finite, or +-inf for alpha 255 / 0.
  for (float v : cloud->opacity_logits) FUZZ_CHECK(!std::isnan(v));

  if (vertex->count == 0) return 0;  // ParseGaussianPly rejects an empty scene
  PlyReadOptions options;
  options.sanitize = false;
  absl::StatusOr<GaussianCloud> via_reader = ParseGaussianPly(bytes, options);
  FUZZ_CHECK(via_reader.ok());
  FUZZ_CHECK(SameBits(*via_reader, *cloud));
  return 0;
}
