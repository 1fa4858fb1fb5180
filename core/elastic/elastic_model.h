// ElasticModel: everything needed to serve a scene at any ratio e.
//
// The stage-2 Gaussians, their Global Importance, and optionally the trained GsNet
// selector and transform field. A model without networks is valid ("heuristic
// mode"): it ranks by GI alone and applies no transform, which is also the
// LightGS* baseline (prune without fine-tuning).
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "elastic/gsnet.h"
#include "elastic/transform_field.h"
#include "scene/gaussian_cloud.h"

namespace flexgs {

inline constexpr int kModelFormatVersion = 1;

// How the Global Importance scores were computed (recorded in the manifest).
struct GiProvenance {
  std::string variant = "flexgs";  // "flexgs" (opacity * T) or "lightgaussian_volume"
  int views = 0;
  int width = 0;
  int height = 0;
};

// Merged levels: the default number of hard-EM passes of the merge.
inline constexpr int kDefaultMergeRefinePasses = 2;

// A rung of a merged-level model whose level attributes were trained (`flexgs refine`,
// train/level_refiner.h): what a client holds after the rung, the merge's attributes
// optimised against renders of the input from all around. The planner uses it in place
// of the merge when the Gaussians it holds after that rung are exactly those it was
// trained for (same ratio, same indices); any other ladder falls back to the merge.
struct RefinedRung {
  double ratio = 0;          // a rung of the model's ladder, in (0, 1)
  uint64_t held_digest = 0;  // HeldIndexDigest of the model indices held after the rung
  GaussianCloud held;        // one Gaussian per held index, in ascending model-index order
};

// More refined rungs than this are refused (a ladder that long is not a ladder).
inline constexpr size_t kMaxRefinedRungs = 64;

// A rung as the merge plans it (stream/level_planner.h MergedRungs), what
// train/level_refiner.h starts from.
struct MergedRung {
  double ratio = 0;
  std::vector<uint32_t> held;      // model indices held after the rung, client order
  GaussianCloud merged;            // the merge's attributes for them, client order
  std::vector<uint32_t> replaced;  // client-order indices (< the previous rung's size) it re-sends
};

// FNV-1a (64-bit) over the little-endian bytes of `sorted_indices`: identifies which
// Gaussians a rung holds without storing the indices.
inline uint64_t HeldIndexDigest(const std::vector<uint32_t>& sorted_indices) {
  uint64_t h = 14695981039346656037ull;
  for (uint32_t v : sorted_indices) {
    for (int b = 0; b < 4; ++b) {
      h ^= (v >> (8 * b)) & 0xffu;
      h *= 1099511628211ull;
    }
  }
  return h;
}

// The order RefinedRung keeps a rung's Gaussians in: `order` lists the positions of
// `held` (distinct model indices, client order) by ascending model index, and `digest` is
// the HeldIndexDigest of the indices in that order. One copy for the refiner that stores
// rungs and the planner that finds them.
struct HeldOrder {
  std::vector<uint32_t> order;
  uint64_t digest = 0;
};
inline HeldOrder OrderHeld(const std::vector<uint32_t>& held) {
  HeldOrder h;
  h.order.resize(held.size());
  std::iota(h.order.begin(), h.order.end(), 0u);
  std::sort(h.order.begin(), h.order.end(), [&](uint32_t a, uint32_t b) { return held[a] < held[b]; });
  std::vector<uint32_t> sorted(held.size());
  for (size_t i = 0; i < sorted.size(); ++i) sorted[i] = held[h.order[i]];
  h.digest = HeldIndexDigest(sorted);
  return h;
}

struct ElasticModel {
  GaussianCloud gaussians;
  std::vector<float> global_importance;  // one finite, non-negative score per Gaussian
  GiProvenance gi;
  std::optional<GsNetWeights> gsnet;           // absent in heuristic mode
  std::optional<TransformFieldWeights> field;  // absent in heuristic mode
  // Ranking score of a trained model: GsNet's margin + gi_prior_weight * log(GI), see
  // GiLogPrior in elastic_selection.h. 0 is the reference's GsNet-only ranking; > 0
  // makes GsNet learn a correction to the GI ranking instead of re-deriving it from
  // geometry alone (which it cannot see opacity in), so an untrained selector with a
  // zero head ranks exactly like GI top-k.
  double gi_prior_weight = 0.0;
  // Share of each ratio's count reserved for spatial coverage (0 = off): the
  // representatives of the finest octree cells that still fit in that share rank first
  // (see CoverageLevels in elastic_selection.h). Ranking by importance alone empties
  // thin parts of an object at small ratios (a guitar keeps its body and loses its
  // neck), which decimation's pairwise merging never does.
  double coverage_share = 0.0;
  // GsNet reads positions and scales in the field box (GsNetInputCloud) instead of raw
  // world units. The reference feeds raw units, which suits scenes of about unit size;
  // on a scene hundreds of units across one Adam step moves GsNet's margins by more than
  // the whole GI prior and the selection collapses (sh3-9k: GI agreement 1.0 -> 0.0 in
  // four steps). False for bundles made before (their rankings stay as they were).
  bool gsnet_box_inputs = false;
  // When a kept Gaussian takes its transformed pose (trained models only):
  //  * false: at every ratio e, as the reference does -- so each nested level re-sends
  //    every earlier Gaussian's pose as a patch (8-9 bytes each, every level);
  //  * true: at the ratio of the level that first sends it, fixed from then on, so later
  //    levels only add Gaussians and carry no patches. The trainer trains exactly that
  //    (TrainOptions::pose_at_insertion). Either way a ratio of 1 is the original scene.
  bool pose_at_insertion = false;
  // What a level's Gaussians look like:
  //  * false: the selected Gaussians (transformed by the field when there is one);
  //  * true: each selected Gaussian merged with the unselected ones that join it
  //    (scene/cluster_merge.h: decimation's moment match onto the nested selection),
  //    the field not applied. Levels then carry replacements -- the full attributes of
  //    earlier Gaussians whose cluster changed -- and a ratio of 1 is the original
  //    scene (every cluster is one Gaussian). Small levels from all around gain 2-4 dB
  //    over selection alone (bench/RESULTS.md).
  bool merged_levels = false;
  // Merged levels below e = 1 skip a replacement whose change is below this many steps
  // of the quantized codec (ReplacementIsVisible in stream/level_planner.h); 0 re-sends
  // every change. The client then keeps the older merge for that Gaussian; at e = 1
  // every change is sent, so the full scene stays exact.
  double replacement_tolerance = 0.0;
  // Merged levels: hard-EM passes of the merge (MergeOptions::refine_passes). Each pass
  // adds about a third of a merged plan's time for 0.1-0.6 dB (bench/RESULTS.md).
  int merge_refine_passes = kDefaultMergeRefinePasses;
  // Merged levels with trained attributes, ascending ratios (empty: the merge as is).
  std::vector<RefinedRung> refined_rungs;
  FieldNormalization normalization;  // bounds + ratio mapping of the field
  std::vector<double> ladder = {0.01, 0.05, 0.10, 0.15};
  std::string training_summary_json = "{}";  // free-form JSON object
  // SHA-256 (hex) identifying this model's content; set by the bundle writer/reader.
  std::string digest;

  bool heuristic() const { return !gsnet.has_value(); }
};

}  // namespace flexgs
