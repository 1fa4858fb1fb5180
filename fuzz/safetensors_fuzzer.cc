// Fuzz target: ParseSafetensors (core/io/safetensors.h), the reader of a bundle's
// elastic.safetensors.
//
// Invariants of an accepted file: every tensor has product(shape) values and rank
// <= 8, the tensors tile the data section exactly (8 + header + 4 * values = file
// size), and serializing the result parses back to the same tensors (bit for bit)
// and metadata.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "fuzz/fuzz_check.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flexgs;
  using namespace flexgs::fuzz;
  const std::string_view bytes = Bytes(data, size);
  std::map<std::string, std::string> metadata;
  absl::StatusOr<TensorMap> tensors = ParseSafetensors(bytes, &metadata);
  if (!tensors.ok()) {
    FUZZ_CHECK(tensors.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  uint64_t values = 0;
  for (const auto& [name, t] : *tensors) {
    FUZZ_CHECK(!name.empty() && name != "__metadata__");
    FUZZ_CHECK(t.shape.size() <= static_cast<size_t>(kMaxSafetensorsRank));
    FUZZ_CHECK(ShapeElementCount(t.shape) == static_cast<int64_t>(t.data.size()));
    values += t.data.size();
  }
  FUZZ_CHECK(8 + header_len + 4 * values == size);

  const std::string written = SerializeSafetensors(*tensors, metadata);
  FUZZ_CHECK(!written.empty());
  std::map<std::string, std::string> metadata_back;
  absl::StatusOr<TensorMap> back = ParseSafetensors(written, &metadata_back);
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(metadata_back == metadata);
  FUZZ_CHECK(back->size() == tensors->size());
  for (const auto& [name, t] : *tensors) {
    const auto it = back->find(name);
    FUZZ_CHECK(it != back->end());
    FUZZ_CHECK(it->second.shape == t.shape);
    FUZZ_CHECK(SameBits(it->second.data, t.data));
  }
  return 0;
}
