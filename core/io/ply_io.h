// Reading and writing 3D Gaussian Splatting scenes as PLY files.
//
// Reads the INRIA 3DGS layout and its many variants: binary (either endianness)
// or ASCII PLY 1.0, any scalar property types (converted to float), properties in
// any order, optional normals, SH degree 0..3 (0, 9, 24 or 45 `f_rest_*`,
// channel-major like GaussianCloud::sh_rest), extra elements and properties
// (skipped), and SuperSplat/PlayCanvas compressed PLY (see core/io/compressed_ply.h).
// Writes exactly the INRIA layout so that every 3DGS tool can read the result.
//
// Errors: a file that is not a usable Gaussian PLY gives InvalidArgument with the
// reason (bad magic, unsupported format, malformed header, missing property named,
// bad f_rest count, zero or too many vertices, non-numeric ASCII value, trailing
// bytes after the declared data, ...). Data that ends before the header says it
// should gives DataLoss ("truncated: ..."). Nothing is allocated for the vertex
// data until the declared size has been checked against the bytes present.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

struct PlyReadOptions {
  // Files declaring more Gaussians than this are rejected before allocating.
  uint64_t max_vertices = 500'000'000;
  // Repair non-finite values with SanitizeNonFinite (and log a warning).
  bool sanitize = true;
};

// What ParseGaussianPly found, for diagnostics (`flexgs inspect`).
struct PlyReadReport {
  uint64_t vertices = 0;  // Gaussians declared in the file (before sanitizing)
  int sh_degree = 0;
  std::string format;  // "binary_little_endian", "binary_big_endian", "ascii" or "compressed"
  bool had_normals = false;
  std::vector<std::string> ignored_properties;  // unknown vertex properties, in file order
  // Non-finite values found: with sanitize, what was repaired; without, what
  // SanitizeNonFinite would repair (the cloud is returned untouched).
  NonFiniteReport non_finite;
  uint64_t file_bytes = 0;
};

// Parses a whole PLY file held in memory. `report` (may be null) is filled on success.
absl::StatusOr<GaussianCloud> ParseGaussianPly(std::string_view bytes, const PlyReadOptions& options = {},
                                               PlyReadReport* report = nullptr);

// Reads and parses the PLY file at `path`; error messages start with the path.
absl::StatusOr<GaussianCloud> ReadGaussianPly(const std::string& path, const PlyReadOptions& options = {},
                                              PlyReadReport* report = nullptr);

enum class PlyFormat { kBinaryLittleEndian, kAscii };

// Serializes in the exact INRIA layout: all `float`, properties
//   x y z nx ny nz f_dc_0..2 f_rest_0..f_rest_{3K-1} opacity scale_0..2 rot_0..3
// with zero normals. ASCII prints the shortest decimal that reads back to the same
// float, so both formats round-trip bit for bit. Returns "" (and logs an error) if
// `cloud` fails Validate().
std::string SerializeGaussianPly(const GaussianCloud& cloud, PlyFormat format = PlyFormat::kBinaryLittleEndian);

// SerializeGaussianPly + WriteFileAtomically; fails if `cloud` fails Validate().
absl::Status WriteGaussianPly(const std::string& path, const GaussianCloud& cloud,
                              PlyFormat format = PlyFormat::kBinaryLittleEndian);

// ---------------------------------------------------------------------------
// Generic PLY header model, shared with the compressed-PLY decoder.

enum class PlyEncoding { kAscii, kBinaryLittleEndian, kBinaryBigEndian };

enum class PlyScalarType : uint8_t { kInt8, kUint8, kInt16, kUint16, kInt32, kUint32, kFloat32, kFloat64 };

// Size in bytes of one binary value of `type`.
int PlyScalarSize(PlyScalarType type);

struct PlyProperty {
  std::string name;
  PlyScalarType type = PlyScalarType::kFloat32;  // item type for lists
  bool is_list = false;
  PlyScalarType list_count_type = PlyScalarType::kUint8;
};

struct PlyElement {
  std::string name;
  uint64_t count = 0;
  std::vector<PlyProperty> properties;

  // Index of the property called `name`, or -1.
  int FindProperty(std::string_view name) const;
  bool HasListProperty() const;
  // Bytes per binary row; only meaningful without list properties.
  uint64_t RowBytes() const;
  // Byte offset of property `index` within a binary row (no list properties before it).
  uint64_t PropertyOffset(int index) const;
};

struct PlyHeader {
  PlyEncoding encoding = PlyEncoding::kBinaryLittleEndian;
  std::vector<PlyElement> elements;
  uint64_t data_offset = 0;  // first byte after the end_header line

  // The element called `name`, or null.
  const PlyElement* FindElement(std::string_view name) const;
};

// Parses and validates the header at the start of `bytes` (at most 64 KiB).
absl::StatusOr<PlyHeader> ParsePlyHeader(std::string_view bytes);

// Splits the data section of a binary PLY into one byte range per element (in
// header order). Fails on list properties (unsupported in binary files), on data
// shorter than declared (DataLoss) and on trailing bytes after it.
absl::StatusOr<std::vector<std::string_view>> SplitBinaryElements(const PlyHeader& header, std::string_view bytes);

}  // namespace flexgs
