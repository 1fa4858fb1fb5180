// A minimal, hardened reader and writer of the safetensors format, float32 only.
//
// Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON header, then the raw tensor bytes. The header
// maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end)} with
// offsets relative to the start of the data section, plus an optional
// "__metadata__" object of string -> string. Files written here are read by
// Python's `safetensors` package (safetensors.numpy.load_file) and vice versa.
//
// The parser treats its input as hostile (it is fuzzed): every offset and size is
// checked before use, nothing is allocated beyond what the input's own length
// justifies, and each rejection says why.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flexgs {

struct Tensor {
  std::vector<int64_t> shape;  // [] is a scalar (one element)
  std::vector<float> data;     // row-major, product(shape) values
};

// Ordered by name so serialisation is deterministic.
using TensorMap = std::map<std::string, Tensor>;

// Limits applied by ParseSafetensors.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;  // as the reference implementation
inline constexpr int kMaxSafetensorsRank = 8;

// Element count of `shape`, or -1 if a dimension is negative or the product
// (times 4 bytes) does not fit in int64.
int64_t ShapeElementCount(const std::vector<int64_t>& shape);

// Serialises `tensors` as dtype "F32" in name order, the header padded with spaces
// to a multiple of 8 bytes (so the data section is 8-byte aligned). `metadata`, if
// not empty, becomes "__metadata__". Returns "" if a tensor's data size does not
// match its shape or a name is empty or "__metadata__" (a programming error).
std::string SerializeSafetensors(const TensorMap& tensors, const std::map<std::string, std::string>& metadata = {});

// Parses a whole safetensors file held in memory. Rejects (InvalidArgument, with
// the reason): a header length beyond the file or above kMaxSafetensorsHeaderBytes,
// invalid or over-nested JSON, duplicate or empty names, unknown fields, any dtype
// but F32 (naming the tensor), negative, non-integer or overflowing shapes, rank
// above kMaxSafetensorsRank, offsets that are out of range, overlap, leave gaps, do
// not match shape * 4 bytes, or leave trailing bytes. `metadata` (may be null)
// receives "__metadata__".
absl::StatusOr<TensorMap> ParseSafetensors(std::string_view bytes,
                                           std::map<std::string, std::string>* metadata = nullptr);

}  // namespace flexgs
