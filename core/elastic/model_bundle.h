// Model bundles: an ElasticModel on disk as a directory `<name>.flexgs/` holding
//
//   gaussians.ply        the stage-2 Gaussians in the standard INRIA 3DGS layout
//                        (binary little endian), viewable in any splat viewer;
//   elastic.safetensors  the Global Importance and network weights as named float32
//                        tensors, readable by Python's `safetensors` package;
//   manifest.json        format version, ladder, bounds, ratio normalisation, GI
//                        provenance, training summary, size and SHA-256 of the two
//                        files above, and a digest identifying the whole model.
//
// Tensors in elastic.safetensors (row-major; DenseLayers as PyTorch nn.Linear,
// weight [out, in], bias [out]):
//   gi                                   [N]            Global Importance, finite, >= 0
//   gsnet.fc1.<branch>.weight / .bias    [32, d] / [32] branch in GsNetWeights::kBranchNames
//                                                       (xyz d=3, rotation 4, scale 3, ratio 1)
//   gsnet.fc2.<branch>.weight / .bias    [32, 32] / [32]
//   gsnet.head.weight / .bias            [2, 128] / [2]
//   field.level<l>.<plane>               [C, res_b, res_a] plane in kPlaneNames, axes
//                                        kPlaneAxes; res = base_resolution * multires[l]
//                                        spatially, ratio_resolution along e
//   field.trunk.weight / .bias           [hidden, C * levels] / [hidden]
//   field.<head>.fc1.weight / .bias      [hidden, hidden] / [hidden]
//   field.<head>.fc2.weight / .bias      [k, hidden] / [k]  head in
//                                        TransformFieldWeights::kHeadNames (k = 3, 3, 4)
//   refined.<k>.<attribute>              [n_k, d]       refined rung k's held Gaussians (attribute
//                                        position 3, log_scale 3, rotation 4, opacity [n_k],
//                                        f_dc 3, f_rest 3((deg+1)^2-1) when deg > 0)
// The refined.* tensors exist iff the manifest has "refined_rungs"; the gsnet.* tensors iff the manifest's "has_gsnet"
// is true, the field.* tensors iff its "field_config" is not null; no other tensor may be present.
//
// manifest.json keys: format ("flexgs-elastic-model"), format_version
// (kModelFormatVersion), gaussians, sh_degree, ladder, bounds {min, max},
// ratio_normalization {scale, offset}, field_config (or null), has_gsnet,
// gi {variant, views, width, height, tensor: "gi"}, training (an object), optionally
// refined_rungs [{ratio, gaussians, held_digest (16 hex digits)}] (RefinedRung), files
// {name: {sha256, bytes}} and digest: the SHA-256 of the manifest's canonical
// serialisation (compact JSON, keys sorted) without "digest" itself. Because it
// covers both file hashes, the digest identifies the model's entire content, and
// two writes of the same model give the same digest (nothing time-dependent is stored).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "elastic/elastic_model.h"

namespace flexgs {

inline constexpr char kBundleFormatName[] = "flexgs-elastic-model";
inline constexpr char kBundlePlyFile[] = "gaussians.ply";
inline constexpr char kBundleTensorFile[] = "elastic.safetensors";
inline constexpr char kBundleManifestFile[] = "manifest.json";

// Validates `model` (Gaussians finite; GI one finite non-negative score per
// Gaussian; network weights pass Validate() and match the field config; ladder
// strictly increasing in (0, 1]; bounds finite with min < max; training summary a
// JSON object), then writes the bundle at `dir`: the files go into a hidden sibling
// staging directory (`.<name>.tmp.XXXXXX`) that then replaces `dir` with one rename,
// or one atomic exchange (renameat2 RENAME_EXCHANGE) when `dir` exists, so a reader
// -- a server rescanning its scenes -- sees the old bundle or the new one, never a
// mix, and a failure (ENOSPC: RESOURCE_EXHAUSTED naming the file) leaves `dir` as
// it was and no partial bundle behind. Where no exchange is possible (`dir` a mount
// point, a filesystem without it, a parent we may not write) the files are replaced
// one by one inside `dir`, each atomically and manifest.json last, so a crash there
// leaves a bundle that fails its checksums rather than one that loads
// inconsistently. An existing `dir` must be empty or hold a bundle. On
// success sets model.digest and normalises model.training_summary_json to the
// canonical form stored (so the model equals what ReadModelBundle returns).
absl::Status WriteModelBundle(const std::string& dir, ElasticModel& model);

// Reads and fully validates a bundle: format and version (a newer format_version is
// FailedPrecondition), the manifest digest, each file's size and SHA-256 before it
// is parsed (DataLoss on mismatch), the Gaussians (count and SH degree as in the
// manifest, every value finite -- nothing is sanitised), every expected tensor
// present with its exact shape, no unexpected tensor, every value finite. Errors
// name the file and the reason. Returns a complete model or an error, never a
// partially loaded one.
absl::StatusOr<ElasticModel> ReadModelBundle(const std::string& dir);

// The text of a manifest.json, checked as ReadModelBundle checks it before opening
// the data files (format, version, digest, every field; the fuzzed seam of the
// reader). Returns the model's metadata -- ladder, bounds, ratio normalisation, GI
// provenance, training summary, digest -- without Gaussians, GI scores or networks.
// Errors start with "manifest.json: ".
absl::StatusOr<ElasticModel> ParseBundleManifest(std::string_view manifest_text);

// The model digest from `dir`'s manifest, after checking the manifest's format,
// version and digest; the data files are not read (cheap enough for listing
// scenes), so use ReadModelBundle to verify them.
absl::StatusOr<std::string> ReadModelDigest(const std::string& dir);

}  // namespace flexgs
