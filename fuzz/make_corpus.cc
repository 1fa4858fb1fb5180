// Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/): a handful of
// small valid inputs per parser, made with the project's own writers, plus edge
// cases written by hand. Deterministic: run by fuzz/make_corpus.sh, outputs committed.
//
//   flexgs_fuzz_make_corpus OUT_DIR
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "elastic/model_bundle.h"
#include "io/ply_io.h"
#include "io/safetensors.h"
#include "scene/synthetic_scene.h"
#include "stream/chunk_codec.h"
#include "stream/resume_token.h"

namespace flexgs {
namespace {

namespace fs = std::filesystem;

fs::path g_out;
int g_written = 0;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = g_out / target;
  fs::create_directories(dir);
  if (bytes.empty()) {
    std::fprintf(stderr, "make_corpus: %s/%s would be empty (writer failed)\n", target.c_str(), name.c_str());
    std::exit(1);
  }
  if (absl::Status s = WriteFileAtomically((dir / name).string(), bytes); !s.ok()) {
    std::fprintf(stderr, "make_corpus: %s\n", std::string(s.message()).c_str());
    std::exit(1);
  }
  ++g_written;
}

GaussianCloud Cloud(size_t n, int sh_degree, uint64_t seed) {
  SyntheticSceneOptions options;
  options.count = n;
  options.sh_degree = sh_degree;
  options.seed = seed;
  return MakeSyntheticScene(options);
}

template <typename T>
void PutBe(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  for (size_t i = sizeof(T); i-- > 0;) out.push_back(b[i]);
}
template <typename T>
void PutLe(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

// ---------------------------------------------------------------------------

void PlyCorpus() {
  Write("ply_reader", "binary_le_sh0.ply", SerializeGaussianPly(Cloud(4, 0, 1)));
  Write("ply_reader", "binary_le_sh1.ply", SerializeGaussianPly(Cloud(2, 1, 2)));
  Write("ply_reader", "binary_le_sh3.ply", SerializeGaussianPly(Cloud(1, 3, 3)));
  Write("ply_reader", "ascii_sh0.ply", SerializeGaussianPly(Cloud(3, 0, 4), PlyFormat::kAscii));
  Write("ply_reader", "ascii_sh2.ply", SerializeGaussianPly(Cloud(1, 2, 5), PlyFormat::kAscii));

  GaussianCloud odd = Cloud(3, 0, 6);
  odd.opacity_logits[0] = std::numeric_limits<float>::infinity();
  odd.opacity_logits[1] = -std::numeric_limits<float>::infinity();
  odd.positions[7] = std::numeric_limits<float>::quiet_NaN();
  Write("ply_reader", "binary_non_finite.ply", SerializeGaussianPly(odd));

  // Big endian, every scalar type, properties shuffled, normals, an unknown property
  // and an extra element before the vertices.
  {
    std::string h =
        "ply\nformat binary_big_endian 1.0\ncomment every scalar type\nelement camera 1\n"
        "property float fx\nproperty float fy\nelement vertex 2\n"
        "property double x\nproperty float32 y\nproperty int16 z\nproperty uchar red\n"
        "property float nx\nproperty float ny\nproperty float nz\n"
        "property float rot_3\nproperty float rot_2\nproperty float rot_1\nproperty float rot_0\n"
        "property char opacity\nproperty ushort scale_0\nproperty int scale_1\nproperty uint scale_2\n"
        "property float64 f_dc_0\nproperty int8 f_dc_1\nproperty uint8 f_dc_2\nend_header\n";
    PutBe<float>(h, 500.0f);
    PutBe<float>(h, 500.0f);
    for (int v = 0; v < 2; ++v) {
      PutBe<double>(h, 0.25 * (v + 1));
      PutBe<float>(h, -1.5f);
      PutBe<int16_t>(h, static_cast<int16_t>(-3 + v));
      PutBe<uint8_t>(h, 200);
      for (int k = 0; k < 3; ++k) PutBe<float>(h, 0.0f);
      for (float q : {0.0f, 0.0f, 0.0f, 1.0f}) PutBe<float>(h, q);
      PutBe<int8_t>(h, static_cast<int8_t>(-2 + 4 * v));
      PutBe<uint16_t>(h, 0);
      PutBe<int32_t>(h, -4);
      PutBe<uint32_t>(h, 1);
      PutBe<double>(h, 0.5);
      PutBe<int8_t>(h, -1);
      PutBe<uint8_t>(h, 1);
    }
    Write("ply_reader", "binary_be_mixed_types.ply", h);
  }
  // ASCII with CRLF header lines, comments, a face element with a list property,
  // blank lines and unusual number spellings.
  {
    std::string h = "ply\r\nformat ascii 1.0\r\ncomment made by hand\r\nobj_info edge cases\r\nelement vertex 2\r\n";
    for (const char* p : {"x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                          "rot_0", "rot_1", "rot_2", "rot_3"}) {
      absl::StrAppend(&h, "property float ", p, "\r\n");
    }
    h += "element face 1\r\nproperty list uchar int vertex_indices\r\nend_header\r\n";
    h += "+1.5 -0 1e-45 0.1 0.2 0.3 inf -2.5 -2.5 -2.5 1 0 0 0\r\n\r\n";
    h += "  1e39\t-1e39 3 nan 0 0 -inf -1 -1 -1 0.5 0.5 0.5 0.5  \n";
    h += "3 0 1 1\n";
    Write("ply_reader", "ascii_crlf_edge_cases.ply", h);
  }
}

// Compressed PLY: any packed value is a valid encoding, so rows are pseudo-random.
std::string CompressedPly(size_t n, int sh_degree, bool chunk_color, uint64_t seed, bool alpha_extremes = false) {
  SplitMix64 rng(seed);
  const size_t chunks = (n + 255) / 256;
  std::string h = absl::StrCat("ply\nformat binary_little_endian 1.0\nelement chunk ", chunks, "\n");
  for (const char* p : {"min_x", "min_y", "min_z", "max_x", "max_y", "max_z", "min_scale_x", "min_scale_y",
                        "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"}) {
    absl::StrAppend(&h, "property float ", p, "\n");
  }
  if (chunk_color) {
    for (const char* p : {"min_r", "min_g", "min_b", "max_r", "max_g", "max_b"}) {
      absl::StrAppend(&h, "property float ", p, "\n");
    }
  }
  absl::StrAppend(&h, "element vertex ", n, "\n");
  for (const char* p : {"packed_position", "packed_rotation", "packed_scale", "packed_color"}) {
    absl::StrAppend(&h, "property uint ", p, "\n");
  }
  const int rest = 3 * ShRestCoeffs(sh_degree);
  if (rest > 0) {
    absl::StrAppend(&h, "element sh ", n, "\n");
    for (int f = 0; f < rest; ++f) absl::StrAppend(&h, "property uchar f_rest_", f, "\n");
  }
  h += "end_header\n";
  for (size_t c = 0; c < chunks; ++c) {
    for (float v : {-1.0f, -2.0f, -0.5f, 1.0f, 2.0f, 0.5f, -6.0f, -6.0f, -7.0f, -3.0f, -2.5f, -4.0f}) PutLe(h, v);
    if (chunk_color) {
      for (float v : {0.1f, 0.0f, 0.2f, 0.9f, 1.0f, 0.8f}) PutLe(h, v);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) {
      uint32_t v = static_cast<uint32_t>(rng.Next());
      if (k == 3 && alpha_extremes) v = (v & ~0xffu) | (i % 2 ? 0xffu : 0x00u);
      PutLe(h, v);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    for (int f = 0; f < rest; ++f) h.push_back(static_cast<char>(rng.Next() & 0xff));
  }
  return h;
}

void CompressedCorpus() {
  Write("compressed_ply", "sh0_chunk_color.ply", CompressedPly(3, 0, true, 1));
  Write("compressed_ply", "sh0_no_color.ply", CompressedPly(3, 0, false, 2));
  Write("compressed_ply", "sh1.ply", CompressedPly(2, 1, true, 3));
  Write("compressed_ply", "sh3.ply", CompressedPly(1, 3, true, 4));
  Write("compressed_ply", "two_chunks.ply", CompressedPly(257, 0, true, 5));
  Write("compressed_ply", "alpha_extremes.ply", CompressedPly(2, 0, false, 6, true));
  Write("ply_reader", "compressed_sh1.ply", CompressedPly(2, 1, true, 7));
}

void ChunkCorpus() {
  for (int d = 0; d <= kMaxShDegree; ++d) {
    const GaussianCloud c = Cloud(d == 0 ? 6 : 3, d, 10 + d);
    Write("chunk_decoder", absl::StrCat("gaussians_quantized_sh", d, ".bin"),
          EncodeGaussianBlock(c, 0, c.size(), ChunkEncoding::kQuantized, d));
    Write("chunk_decoder", absl::StrCat("gaussians_lossless_sh", d, ".bin"),
          EncodeGaussianBlock(c, 0, c.size(), ChunkEncoding::kLossless, d));
  }
  const GaussianCloud many = Cloud(64, 0, 20);
  Write("chunk_decoder", "gaussians_quantized_64.bin",
        EncodeGaussianBlock(many, 0, many.size(), ChunkEncoding::kQuantized, 0));
  Write("chunk_decoder", "gaussians_quantized_one.bin", EncodeGaussianBlock(many, 5, 6, ChunkEncoding::kQuantized, 0));
  Write("chunk_decoder", "gaussians_quantized_empty.bin",
        EncodeGaussianBlock(many, 0, 0, ChunkEncoding::kQuantized, 0));
  Write("chunk_decoder", "gaussians_lossless_empty.bin", EncodeGaussianBlock(many, 0, 0, ChunkEncoding::kLossless, 0));

  std::vector<float> patches;
  SplitMix64 rng(21);
  for (int i = 0; i < 5; ++i) {
    for (int k = 0; k < 3; ++k) patches.push_back(static_cast<float>(rng.Uniform(-2, 2)));
    for (int k = 0; k < 3; ++k) patches.push_back(static_cast<float>(rng.Uniform(-6, -2)));
    for (int k = 0; k < 4; ++k) patches.push_back(static_cast<float>(rng.Normal()));
  }
  Write("chunk_decoder", "patches_quantized.bin", EncodePatchBlock(patches, ChunkEncoding::kQuantized));
  Write("chunk_decoder", "patches_lossless.bin", EncodePatchBlock(patches, ChunkEncoding::kLossless));
  Write("chunk_decoder", "patches_quantized_empty.bin", EncodePatchBlock({}, ChunkEncoding::kQuantized));

  const GaussianCloud merged = Cloud(4, 1, 22);
  const std::vector<uint32_t> indices = {0, 3, 4, 900};
  Write("chunk_decoder", "replacements_quantized_sh1.bin",
        EncodeReplacementBlock(indices, merged, 0, 4, ChunkEncoding::kQuantized, 1));
  Write("chunk_decoder", "replacements_lossless_sh0.bin",
        EncodeReplacementBlock(indices, merged, 0, 4, ChunkEncoding::kLossless, 0));
}

void ResumeTokenCorpus() {
  StreamParams p;
  p.scene_id = "guitar";
  p.model_digest = std::string(64, 'a');
  p.top_ratio = 0.15;
  p.ladder = {0.01, 0.05, 0.10, 0.15};
  p.sh_degree = 0;
  p.encoding = 1;
  p.max_chunk_bytes = 1 << 20;
  Write("resume_token", "basic.bin", EncodeResumeToken(p));
  StreamParams empty = p;
  empty.ladder.clear();
  empty.top_ratio = 0;
  Write("resume_token", "empty_ladder.bin", EncodeResumeToken(empty));
  StreamParams rungs = p;
  rungs.ladder.clear();
  for (int i = 1; i <= 64; ++i) rungs.ladder.push_back(i / 64.0);
  rungs.top_ratio = 1.0;
  Write("resume_token", "max_rungs.bin", EncodeResumeToken(rungs));
  StreamParams ids = p;
  ids.scene_id = std::string(512, 's');
  ids.model_digest = std::string(128, 'd');
  ids.sh_degree = 3;
  ids.encoding = 2;
  ids.max_chunk_bytes = 0xffffffffu;
  Write("resume_token", "longest_ids_lossless_sh3.bin", EncodeResumeToken(ids));
  StreamParams zero;
  zero.encoding = 0;
  Write("resume_token", "all_zero.bin", EncodeResumeToken(zero));
}

// Writes a bundle into a scratch directory and returns the named file's bytes.
std::string BundleFile(ElasticModel model, const char* file) {
  char scratch[] = "/tmp/flexgs-make-corpus-XXXXXX";
  if (mkdtemp(scratch) == nullptr) std::exit(1);
  const std::string dir = std::string(scratch) + "/m.flexgs";
  absl::Status s = WriteModelBundle(dir, model);
  std::string bytes;
  if (s.ok()) bytes = ReadFileToString((fs::path(dir) / file).string()).value_or("");
  fs::remove_all(scratch);
  if (!s.ok()) {
    std::fprintf(stderr, "make_corpus: WriteModelBundle: %s\n", std::string(s.message()).c_str());
    std::exit(1);
  }
  return bytes;
}

ElasticModel HeuristicModel(size_t n) {
  ElasticModel m;
  m.gaussians = Cloud(n, 1, 30);
  for (size_t i = 0; i < n; ++i) m.global_importance.push_back(static_cast<float>(i) * 0.5f);
  m.gi = {"flexgs", 24, 320, 240};
  m.normalization.aabb_min = {-3.25f, -2.5f, -1.0f / 3.0f};
  m.normalization.aabb_max = {3.0f, 2.75f, 0.1f};
  m.ladder = {0.01, 0.05, 0.1, 0.15, 1.0};
  m.training_summary_json = R"({"iterations": 0, "note": "heuristic"})";
  return m;
}

void ManifestAndSafetensorsCorpus() {
  Write("manifest_json", "heuristic.json", BundleFile(HeuristicModel(6), kBundleManifestFile));
  ElasticModel full = HeuristicModel(6);
  full.gsnet = GsNetWeights::Init(1);
  TransformFieldConfig config;
  config.channels = 2;
  config.base_resolution = 4;
  config.multires = {1, 2};
  config.ratio_resolution = 3;
  config.hidden = 8;
  full.field = TransformFieldWeights::Init(config, 2);
  full.gi = {"lightgaussian_volume", 0, 0, 0};
  full.training_summary_json = R"({"iterations": 5000, "loss": {"final": 0.0123, "history": [1, 0.5]}})";
  Write("manifest_json", "full.json", BundleFile(full, kBundleManifestFile));

  Write("safetensors", "bundle_gi.safetensors", BundleFile(HeuristicModel(6), kBundleTensorFile));
  Write("safetensors", "no_tensors.safetensors", SerializeSafetensors({}));
  TensorMap mixed;
  mixed["scalar"] = Tensor{{}, {3.5f}};
  mixed["empty"] = Tensor{{0}, {}};
  mixed["empty_2d"] = Tensor{{3, 0}, {}};
  mixed["matrix"] = Tensor{{2, 3}, {1, 2, 3, 4, 5, 6}};
  mixed["cube"] = Tensor{{2, 1, 2}, {-1, 0, 1, std::numeric_limits<float>::infinity()}};
  Write("safetensors", "mixed_shapes.safetensors", SerializeSafetensors(mixed));
  Write("safetensors", "metadata.safetensors",
        SerializeSafetensors({{"w", Tensor{{2}, {0.5f, -0.5f}}}}, {{"format", "pt"}, {"note", "caf\xc3\xa9"}}));
}

}  // namespace
}  // namespace flexgs

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  flexgs::g_out = argv[1];
  flexgs::PlyCorpus();
  flexgs::CompressedCorpus();
  flexgs::ChunkCorpus();
  flexgs::ResumeTokenCorpus();
  flexgs::ManifestAndSafetensorsCorpus();
  std::printf("make_corpus: wrote %d files under %s\n", flexgs::g_written, argv[1]);
  return 0;
}
