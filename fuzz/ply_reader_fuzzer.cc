// Fuzz target: ParseGaussianPly (core/io/ply_io.h) on arbitrary bytes -- binary (both
// endiannesses) and ASCII PLY, and compressed PLY through the same entry point.
//
// Invariants of an accepted input:
//   - without sanitizing: a valid cloud of exactly the declared vertex count, the
//     reported SH degree, and the non-finite counts CountNonFinite gives;
//   - sanitizing the same bytes: also accepted, equal to SanitizeNonFinite of the
//     unsanitized cloud, every value finite, `dropped` Gaussians fewer;
//   - that finite cloud written back (binary and ASCII INRIA layout) parses to the
//     same bits;
//   - an ASCII file reads the same without its final newline.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_check.h"
#include "io/ply_io.h"
#include "scene/gaussian_cloud.h"

namespace flexgs::fuzz {
namespace {

// Small enough that no input of a few KiB can make one run slow or large.
constexpr uint64_t kMaxVertices = uint64_t{1} << 16;

void CheckRoundTrip(const GaussianCloud& cloud, PlyFormat format) {
  const std::string written = SerializeGaussianPly(cloud, format);
  FUZZ_CHECK(!written.empty());
  PlyReadOptions options;
  options.sanitize = false;
  absl::StatusOr<GaussianCloud> back = ParseGaussianPly(written, options);
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(SameBits(*back, cloud));
}

}  // namespace
}  // namespace flexgs::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  flexgs::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flexgs;
  using namespace flexgs::fuzz;
  const std::string_view bytes = Bytes(data, size);

  PlyReadOptions raw_options;
  raw_options.max_vertices = kMaxVertices;
  raw_options.sanitize = false;
  PlyReadReport raw_report;
  absl::StatusOr<GaussianCloud> raw = ParseGaussianPly(bytes, raw_options, &raw_report);
  if (!raw.ok()) return 0;
  FUZZ_CHECK(raw->Validate().ok());
  FUZZ_CHECK(raw->size() == raw_report.vertices);
  FUZZ_CHECK(raw->size() > 0 && raw->size() <= kMaxVertices);
  FUZZ_CHECK(raw->sh_degree == raw_report.sh_degree);
  FUZZ_CHECK(raw->sh_degree >= 0 && raw->sh_degree <= kMaxShDegree);
  FUZZ_CHECK(raw_report.file_bytes == size);
  const NonFiniteReport counted = CountNonFinite(*raw);
  FUZZ_CHECK(counted.opacity_clamped == raw_report.non_finite.opacity_clamped);
  FUZZ_CHECK(counted.dropped == raw_report.non_finite.dropped);

  PlyReadOptions clean_options = raw_options;
  clean_options.sanitize = true;
  PlyReadReport clean_report;
  absl::StatusOr<GaussianCloud> clean = ParseGaussianPly(bytes, clean_options, &clean_report);
  FUZZ_CHECK(clean.ok());
  GaussianCloud expected = *raw;
  const NonFiniteReport repaired = SanitizeNonFinite(expected);
  FUZZ_CHECK(repaired.dropped == counted.dropped && repaired.opacity_clamped == counted.opacity_clamped);
  FUZZ_CHECK(SameBits(*clean, expected));
  FUZZ_CHECK(clean->size() == raw->size() - counted.dropped);
  FUZZ_CHECK(AllFinite(*clean));

  if (raw_report.format == "ascii" && bytes.back() == '\n') {
    absl::StatusOr<GaussianCloud> unterminated = ParseGaussianPly(bytes.substr(0, size - 1), raw_options);
    FUZZ_CHECK(unterminated.ok());
    FUZZ_CHECK(SameBits(*unterminated, *raw));
  }

  // Zero Gaussians left is legal for the reader but not a writable PLY.
  if (!clean->empty()) {
    CheckRoundTrip(*clean, PlyFormat::kBinaryLittleEndian);
    CheckRoundTrip(*clean, PlyFormat::kAscii);
  }
  return 0;
}
