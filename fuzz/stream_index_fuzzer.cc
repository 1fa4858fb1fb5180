// Fuzz target: the reader of exported streams (ReadStreamExport, ReadExportedBlock;
// core/stream/stream_export.h), whose index.json and blocks.bin may come from any HTTP
// cache. Input: two bytes giving the size of blocks.bin (its bytes are the input's tail
// when long enough, zeros otherwise), then index.json.
//
// Invariants of an accepted export: levels hold increasing counts at increasing ratios
// within the model; blocks sit at increasing sequences inside their level, back to back
// in blocks.bin, whose size the index states; every block read back either passes its
// CRC-32C with exactly its stated length or is refused with DATA_LOSS.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "base/crc32c.h"
#include "base/file_io.h"
#include "fuzz/fuzz_check.h"
#include "stream/stream_export.h"

namespace flexgs::fuzz {
namespace {

const std::string& ScratchDir() {
  static const std::string* dir = [] {
    std::string pattern = (std::filesystem::temp_directory_path() / "flexgs-fuzz-index.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    return new std::string(pattern);
  }();
  return *dir;
}

}  // namespace
}  // namespace flexgs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flexgs;
  if (size < 2) return 0;
  const size_t blocks_size = (data[0] | (size_t{data[1]} << 8)) & 0x3fff;
  const std::string text(reinterpret_cast<const char*>(data + 2), size - 2);
  std::string blocks(blocks_size, '\0');
  for (size_t i = 0; i < blocks_size && i < text.size(); ++i) blocks[i] = text[text.size() - 1 - i];
  const std::string& dir = fuzz::ScratchDir();
  if (!WriteFileAtomically(dir + "/index.json", text).ok() || !WriteFileAtomically(dir + "/blocks.bin", blocks).ok()) {
    std::abort();
  }
  auto e = ReadStreamExport(dir);
  if (!e.ok()) return 0;
  FUZZ_CHECK(!e->levels.empty());
  FUZZ_CHECK(e->blocks_bytes == blocks_size);
  uint64_t held = 0;
  double ratio = 0;
  for (const StreamLevelSummary& l : e->levels) {
    FUZZ_CHECK(l.ratio > ratio && l.ratio <= 1.0);
    FUZZ_CHECK(l.gaussians >= held && l.gaussians <= e->scene.model_gaussians);
    ratio = l.ratio;
    held = l.gaussians;
  }
  uint64_t offset = 0, sequence = 0;
  for (size_t i = 0; i < e->blocks.size(); ++i) {
    const ExportedBlock& b = e->blocks[i];
    FUZZ_CHECK(b.offset == offset && b.sequence > sequence && b.level < e->levels.size());
    FUZZ_CHECK(b.sequence >= e->levels[b.level].first_item && b.sequence < e->levels[b.level].level_end_item);
    offset += b.bytes;
    sequence = b.sequence;
    auto bytes = ReadExportedBlock(dir, *e, i);
    if (bytes.ok()) {
      FUZZ_CHECK(bytes->size() == b.bytes && Crc32c(*bytes) == b.crc32c);
    } else {
      FUZZ_CHECK(bytes.status().code() == absl::StatusCode::kDataLoss);
    }
  }
  FUZZ_CHECK(offset == e->blocks_bytes);
  return 0;
}
