// The deterministic message script a stream (and a resumed stream) sends, replayed
// through the chunk decoder against the plan it came from.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "base/crc32c.h"
#include "base/thread_pool.h"
#include "elastic/elastic_selection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scene/synthetic_scene.h"
#include "stream/chunk_codec.h"
#include "stream/level_planner.h"
#include "stream/resume_token.h"
#include "stream/stream_budget.h"
#include "stream/stream_script.h"
#include "tests/support/test_models.h"

namespace flexgs {
namespace {

using ::flexgs::testing::HeuristicTestModel;
using ::flexgs::testing::TrainedLikeTestModel;

// What a client holds after each level, straight from the plan (no codec).
std::vector<GaussianCloud> ExpectedLevels(const Plan& plan, int sh_degree) {
  std::vector<GaussianCloud> out;
  GaussianCloud state;
  state.sh_degree = sh_degree;
  for (const PlanLevel& level : plan.levels) {
    for (size_t i = 0; i < level.patches.size() / kPatchStride; ++i) {
      const float* p = &level.patches[i * kPatchStride];
      std::copy(p, p + 3, &state.positions[i * 3]);
      std::copy(p + 3, p + 6, &state.log_scales[i * 3]);
      std::copy(p + 6, p + 10, &state.rotations[i * 4]);
    }
    const GaussianCloud a = level.added_gaussians.WithShDegree(sh_degree);
    const size_t old = state.size();
    state.Resize(old + a.size());
    std::copy(a.positions.begin(), a.positions.end(), state.positions.begin() + old * 3);
    std::copy(a.log_scales.begin(), a.log_scales.end(), state.log_scales.begin() + old * 3);
    std::copy(a.rotations.begin(), a.rotations.end(), state.rotations.begin() + old * 4);
    std::copy(a.opacity_logits.begin(), a.opacity_logits.end(), state.opacity_logits.begin() + old);
    std::copy(a.sh_dc.begin(), a.sh_dc.end(), state.sh_dc.begin() + old * 3);
    std::copy(a.sh_rest.begin(), a.sh_rest.end(), state.sh_rest.begin() + old * a.rest_coeffs() * 3);
    out.push_back(state);
  }
  return out;
}

// Largest |a - b| tolerated per component, from the spread of the expected values:
// a fraction of the range for the range-quantized attributes.
float Spread(const std::vector<float>& v, int stride, int c) {
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = c; i < v.size(); i += stride) {
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
  }
  return v.size() > static_cast<size_t>(c) ? hi - lo : 0.0f;
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, int stride, double fraction,
                const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (int c = 0; c < stride; ++c) {
    const double tol = fraction * Spread(want, stride, c) + 1e-5;
    for (size_t i = c; i < got.size(); i += stride) {
      ASSERT_NEAR(got[i], want[i], tol) << what << " component " << c << " of Gaussian " << i / stride;
    }
  }
}

// Covariance R diag(exp(2 s)) R^T (row-major 3x3) of Gaussian i: what a quantized
// block preserves, since the encoder may permute axes and pick an equivalent quaternion.
std::array<double, 9> Covariance(const GaussianCloud& g, size_t i) {
  const float* q = &g.rotations[i * 4];
  const double n = std::sqrt(double{q[0]} * q[0] + double{q[1]} * q[1] + double{q[2]} * q[2] + double{q[3]} * q[3]);
  const double w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n;
  const double r[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z),     2 * (x * z + w * y),
                       2 * (x * y + w * z),     1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                       2 * (x * z - w * y),     2 * (y * z + w * x),     1 - 2 * (x * x + y * y)};
  double var[3];
  for (int a = 0; a < 3; ++a) var[a] = std::exp(2.0 * g.log_scales[i * 3 + a]);
  std::array<double, 9> c{};
  for (int row = 0; row < 3; ++row)
    for (int col = 0; col < 3; ++col)
      for (int a = 0; a < 3; ++a) c[row * 3 + col] += r[row * 3 + a] * var[a] * r[col * 3 + a];
  return c;
}

// Tolerances follow the bit depths documented in core/stream/chunk_codec.h, against the
// spread of the whole level (a block's range is never wider), with some margin.
void ExpectQuantizedMatch(const GaussianCloud& got, const GaussianCloud& want) {
  ExpectNear(got.positions, want.positions, 3, 1.0 / 30000, "position");  // 16 bits
  ExpectNear(got.sh_dc, want.sh_dc, 3, 1.0 / 50, "SH DC");                // 5 bits
  ASSERT_EQ(got.size(), want.size());
  float s_lo = INFINITY, s_hi = -INFINITY;
  for (float s : want.log_scales) {
    s_lo = std::min(s_lo, s);
    s_hi = std::max(s_hi, s);
  }
  const double scale_tol = (s_hi - s_lo) / 100.0 + 1e-5;  // 6 bits per (sorted) axis
  for (size_t i = 0; i < got.size(); ++i) {
    const auto sig = [](float l) { return 1.0 / (1.0 + std::exp(-static_cast<double>(l))); };
    ASSERT_NEAR(sig(got.opacity_logits[i]), sig(want.opacity_logits[i]), 1.0 / 200) << "opacity " << i;  // 7 bits
    // Axes may come back permuted: compare sorted scales, then the shape itself.
    std::array<float, 3> gs, ws;
    std::copy_n(&got.log_scales[i * 3], 3, gs.begin());
    std::copy_n(&want.log_scales[i * 3], 3, ws.begin());
    std::sort(gs.begin(), gs.end());
    std::sort(ws.begin(), ws.end());
    for (int a = 0; a < 3; ++a) ASSERT_NEAR(gs[a], ws[a], scale_tol) << "sorted log-scale " << a << " of " << i;
    const float* q = &got.rotations[i * 4];
    ASSERT_NEAR(double{q[0]} * q[0] + double{q[1]} * q[1] + double{q[2]} * q[2] + double{q[3]} * q[3], 1.0, 1e-4);
    const std::array<double, 9> cg = Covariance(got, i), cw = Covariance(want, i);
    const double lambda_max = std::exp(2.0 * ws[2]);
    // Scale error (relative 2 * scale_tol) plus a rotation error of a few hundredths
    // of a radian (7-bit smallest-three), both relative to the largest axis.
    const double cov_tol = lambda_max * (std::expm1(2 * scale_tol) + 0.08);
    for (int e = 0; e < 9; ++e) ASSERT_NEAR(cg[e], cw[e], cov_tol) << "covariance entry " << e << " of " << i;
  }
  // SH rest: uniform step 0.06 (half step 0.03), coarser only where a value would
  // need more than 127 steps (then max |v| / 127).
  const int k3 = want.rest_coeffs() * 3;
  for (int c = 0; c < k3; ++c) {
    float max_abs = 0;
    for (size_t i = c; i < want.sh_rest.size(); i += k3) max_abs = std::max(max_abs, std::abs(want.sh_rest[i]));
    const double tol = std::max(0.031, max_abs / 200.0);
    for (size_t i = c; i < want.sh_rest.size(); i += k3) {
      ASSERT_NEAR(got.sh_rest[i], want.sh_rest[i], tol) << "SH rest " << c;
    }
  }
}

void Append(GaussianCloud& state, const GaussianCloud& a) {
  const size_t old = state.size();
  state.Resize(old + a.size());
  std::copy(a.positions.begin(), a.positions.end(), state.positions.begin() + old * 3);
  std::copy(a.log_scales.begin(), a.log_scales.end(), state.log_scales.begin() + old * 3);
  std::copy(a.rotations.begin(), a.rotations.end(), state.rotations.begin() + old * 4);
  std::copy(a.opacity_logits.begin(), a.opacity_logits.end(), state.opacity_logits.begin() + old);
  std::copy(a.sh_dc.begin(), a.sh_dc.end(), state.sh_dc.begin() + old * 3);
  std::copy(a.sh_rest.begin(), a.sh_rest.end(), state.sh_rest.begin() + old * a.rest_coeffs() * 3);
}

// Replays a script as a client does -- decode each block as it arrives, apply in
// order -- and checks structure, chunk sizes, summaries and each level's held set.
void CheckScriptReplay(const Plan& plan, const StreamScript& script, const ScriptOptions& options) {
  const std::vector<GaussianCloud> expected = ExpectedLevels(plan, options.sh_degree);
  const bool lossless = options.encoding == ChunkEncoding::kLossless;
  ASSERT_GE(script.items.size(), 2 + plan.levels.size());
  EXPECT_EQ(script.items.front().kind, StreamItemKind::kHeader);
  EXPECT_EQ(script.items.back().kind, StreamItemKind::kTrailer);
  ASSERT_EQ(script.levels.size(), plan.levels.size());
  EXPECT_EQ(script.sh_degree, options.sh_degree);
  EXPECT_EQ(script.encoding, options.encoding);

  GaussianCloud state;
  state.sh_degree = options.sh_degree;
  size_t item = 1;
  uint64_t total_payload = 0;
  for (size_t k = 0; k < plan.levels.size(); ++k) {
    SCOPED_TRACE(::testing::Message() << "level " << k);
    const PlanLevel& level = plan.levels[k];
    const StreamLevelSummary& summary = script.levels[k];
    EXPECT_EQ(summary.first_item, item);
    EXPECT_EQ(summary.ratio, level.ratio);
    EXPECT_EQ(summary.gaussians, level.count);
    EXPECT_EQ(summary.added, level.added.size());
    EXPECT_EQ(summary.patched, level.patches.size() / kPatchStride);
    uint64_t payload = 0, patched = 0;
    const size_t held_before = state.size();
    bool seen_gaussians = false;
    for (;; ++item) {
      ASSERT_LT(item, script.items.size() - 1);
      const StreamItem& it = script.items[item];
      ASSERT_EQ(it.level, k) << "item " << item;
      if (it.kind == StreamItemKind::kLevelEnd) break;
      ASSERT_TRUE(it.kind == StreamItemKind::kPatches || it.kind == StreamItemKind::kGaussians) << item;
      ASSERT_LE(it.data.size(), options.max_chunk_bytes - kChunkEnvelopeBytes) << "item " << item;
      ASSERT_GT(it.count, 0u);
      payload += it.data.size();
      auto info = ReadBlockInfo(it.data);
      ASSERT_TRUE(info.ok()) << info.status();
      EXPECT_EQ(info->encoding, options.encoding);
      EXPECT_EQ(info->count, it.count);
      if (it.kind == StreamItemKind::kPatches) {
        ASSERT_FALSE(seen_gaussians) << "patches after additions in item " << item;
        ASSERT_EQ(it.first, patched) << "patch blocks must be contiguous, in client order";
        ASSERT_LE(it.first + it.count, held_before);
        auto patches = DecodePatchBlock(it.data);
        ASSERT_TRUE(patches.ok()) << patches.status();
        ASSERT_EQ(patches->size(), size_t{it.count} * kPatchStride);
        for (size_t i = 0; i < it.count; ++i) {
          const float* p = &(*patches)[i * kPatchStride];
          const size_t dst = it.first + i;
          std::copy(p, p + 3, &state.positions[dst * 3]);
          std::copy(p + 3, p + 6, &state.log_scales[dst * 3]);
          std::copy(p + 6, p + 10, &state.rotations[dst * 4]);
        }
        patched += it.count;
      } else {
        seen_gaussians = true;
        ASSERT_EQ(it.first, state.size()) << "Gaussian blocks must append in order";
        auto block = DecodeGaussianBlock(it.data);
        ASSERT_TRUE(block.ok()) << block.status();
        ASSERT_EQ(block->size(), it.count);
        ASSERT_EQ(block->sh_degree, options.sh_degree);
        Append(state, *block);
      }
    }
    EXPECT_EQ(summary.level_end_item, item);
    EXPECT_EQ(patched, summary.patched);
    EXPECT_EQ(payload, summary.payload_bytes);
    total_payload += payload;
    ++item;

    // At LEVEL_END the client holds exactly the planner's level.
    ASSERT_EQ(state.size(), level.count);
    const GaussianCloud& want = expected[k];
    if (lossless) {
      EXPECT_EQ(state.positions, want.positions);
      EXPECT_EQ(state.log_scales, want.log_scales);
      EXPECT_EQ(state.rotations, want.rotations);
      EXPECT_EQ(state.opacity_logits, want.opacity_logits);
      EXPECT_EQ(state.sh_dc, want.sh_dc);
      EXPECT_EQ(state.sh_rest, want.sh_rest);
    } else {
      ExpectQuantizedMatch(state, want);
    }
  }
  EXPECT_EQ(item, script.items.size() - 1);
  EXPECT_EQ(total_payload, script.payload_bytes);
  EXPECT_GT(script.ByteSize(), script.payload_bytes);
}

void ExpectIdentical(const StreamScript& a, const StreamScript& b) {
  ASSERT_EQ(a.items.size(), b.items.size());
  for (size_t i = 0; i < a.items.size(); ++i) {
    ASSERT_EQ(a.items[i].kind, b.items[i].kind) << i;
    ASSERT_EQ(a.items[i].level, b.items[i].level) << i;
    ASSERT_EQ(a.items[i].first, b.items[i].first) << i;
    ASSERT_EQ(a.items[i].count, b.items[i].count) << i;
    ASSERT_TRUE(a.items[i].data == b.items[i].data) << "item " << i << " differs";
  }
  ASSERT_EQ(a.levels.size(), b.levels.size());
  for (size_t k = 0; k < a.levels.size(); ++k) {
    EXPECT_EQ(a.levels[k].payload_bytes, b.levels[k].payload_bytes);
    EXPECT_EQ(a.levels[k].first_item, b.levels[k].first_item);
    EXPECT_EQ(a.levels[k].level_end_item, b.levels[k].level_end_item);
  }
  EXPECT_EQ(a.payload_bytes, b.payload_bytes);
  EXPECT_EQ(a.ByteSize(), b.ByteSize());
}

TEST(StreamScriptTest, HeuristicLosslessScriptReplaysEveryLevelExactly) {
  ThreadPool pool(2);
  const ElasticModel m = HeuristicTestModel(5000, 5, 1);
  auto plan = PlanLevels(m, {.top_ratio = 0.2, .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 5u);
  const ScriptOptions options{.encoding = ChunkEncoding::kLossless, .sh_degree = 1, .max_chunk_bytes = 4096};
  auto script = BuildStreamScript(*plan, options);
  ASSERT_TRUE(script.ok()) << script.status();
  for (const StreamItem& it : script->items) EXPECT_NE(it.kind, StreamItemKind::kPatches);  // no transform
  // Small chunks: most levels need many blocks.
  EXPECT_GT(script->items.size(), 2 + 5 + 1000 / GaussiansPerBlock(4096, ChunkEncoding::kLossless, 1));
  CheckScriptReplay(*plan, *script, options);
}

TEST(StreamScriptTest, TrainedLosslessScriptsPatchAndReplayExactly) {
  ThreadPool pool(2);
  for (uint64_t seed : {1, 2}) {
    SCOPED_TRACE(seed);
    const ElasticModel m = TrainedLikeTestModel(3000, seed, 2);
    auto plan = PlanLevels(m, {.top_ratio = 0.3, .ladder = {0.02, 0.07, 0.15}}, &pool);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_EQ(plan->levels.size(), 4u);
    ASSERT_FALSE(plan->levels[1].patches.empty());
    for (int sh : {2, 0}) {  // full SH, and bands dropped for a small client
      const ScriptOptions options{.encoding = ChunkEncoding::kLossless, .sh_degree = sh, .max_chunk_bytes = 4096};
      auto script = BuildStreamScript(*plan, options);
      ASSERT_TRUE(script.ok()) << script.status();
      CheckScriptReplay(*plan, *script, options);
      size_t patch_blocks = 0;
      for (const StreamItem& it : script->items) patch_blocks += it.kind == StreamItemKind::kPatches;
      EXPECT_GT(patch_blocks, 3u);
    }
  }
}

// Poses fixed at insertion, streamed to 100 % losslessly: no patch block before the last
// level, whose patches bring every earlier Gaussian back to the model's own, so the
// client ends with the model's Gaussians bit for bit; patch bytes are counted per level.
TEST(StreamScriptTest, InsertionPosesStreamTheFullSceneExactly) {
  ThreadPool pool(2);
  ElasticModel m = ::flexgs::testing::RatioDependentTestModel(3000, 3, /*sh_degree=*/1);
  m.pose_at_insertion = true;
  auto plan = PlanLevels(m, {.top_ratio = 1.0, .ladder = {0.02, 0.07, 0.15}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 4u);
  const ScriptOptions options{.encoding = ChunkEncoding::kLossless, .sh_degree = 1, .max_chunk_bytes = 4096};
  auto script = BuildStreamScript(*plan, options);
  ASSERT_TRUE(script.ok()) << script.status();
  CheckScriptReplay(*plan, *script, options);
  std::vector<uint64_t> patch_bytes(plan->levels.size(), 0);
  for (const StreamItem& it : script->items) {
    if (it.kind == StreamItemKind::kPatches) patch_bytes[it.level] += it.data.size();
  }
  for (size_t k = 0; k < plan->levels.size(); ++k) {
    EXPECT_EQ(script->levels[k].patch_bytes, patch_bytes[k]) << k;
    EXPECT_EQ(patch_bytes[k] > 0, k == 3) << k;
  }
  auto held = LevelCloud(*plan, 3);
  ASSERT_TRUE(held.ok());
  std::vector<uint32_t> order;
  for (const PlanLevel& l : plan->levels) order.insert(order.end(), l.added.begin(), l.added.end());
  const GaussianCloud input = m.gaussians.Gather(order);
  EXPECT_EQ(held->positions, input.positions);
  EXPECT_EQ(held->log_scales, input.log_scales);
  EXPECT_EQ(held->rotations, input.rotations);
}

TEST(StreamScriptTest, QuantizedScriptsDecodeWithinTolerance) {
  ThreadPool pool(2);
  const ElasticModel m = TrainedLikeTestModel(4000, 7, 3);
  auto plan = PlanLevels(m, {.top_ratio = 0.25, .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  for (int sh : {3, 1}) {
    for (uint32_t chunk : {4096u, 65536u}) {
      SCOPED_TRACE(::testing::Message() << "sh " << sh << " chunk " << chunk);
      const ScriptOptions options{.encoding = ChunkEncoding::kQuantized, .sh_degree = sh, .max_chunk_bytes = chunk};
      auto script = BuildStreamScript(*plan, options);
      ASSERT_TRUE(script.ok()) << script.status();
      CheckScriptReplay(*plan, *script, options);
    }
  }
}

TEST(StreamScriptTest, ScriptsAreByteIdenticalAcrossBuilds) {
  ThreadPool one(1), two(2);
  const ElasticModel m = TrainedLikeTestModel(3000, 9, 1);
  const PlanRequest req{.top_ratio = 0.2, .ladder = {}};
  auto p1 = PlanLevels(m, req, &one);
  auto p2 = PlanLevels(m, req, &two);
  ASSERT_TRUE(p1.ok() && p2.ok());
  for (ChunkEncoding enc : {ChunkEncoding::kQuantized, ChunkEncoding::kLossless}) {
    const ScriptOptions options{.encoding = enc, .sh_degree = 1, .max_chunk_bytes = 8192};
    auto a = BuildStreamScript(*p1, options);
    auto b = BuildStreamScript(*p2, options);
    auto c = BuildStreamScript(*p1, options);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    ExpectIdentical(*a, *b);
    ExpectIdentical(*a, *c);
  }
}

// A rung that adds nothing (floor(e N) unchanged) still gets its LEVEL_END, and one
// big chunk per level carries everything.
TEST(StreamScriptTest, EmptyLevelsAndLargeChunks) {
  ThreadPool pool(1);
  const ElasticModel m = HeuristicTestModel(100, 3, 2);
  auto plan = PlanLevels(m, {.top_ratio = 0.5, .ladder = {0.01, 0.015, 0.2}}, &pool);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->levels.size(), 4u);
  ASSERT_TRUE(plan->levels[1].added.empty());
  const ScriptOptions options{.encoding = ChunkEncoding::kLossless, .sh_degree = 2, .max_chunk_bytes = 4 << 20};
  auto script = BuildStreamScript(*plan, options);
  ASSERT_TRUE(script.ok()) << script.status();
  // header, (block, end), (end), (block, end), (block, end), trailer
  ASSERT_EQ(script->items.size(), 9u);
  EXPECT_EQ(script->items[3].kind, StreamItemKind::kLevelEnd);
  EXPECT_EQ(script->levels[1].first_item, 3u);
  EXPECT_EQ(script->levels[1].level_end_item, 3u);
  EXPECT_EQ(script->levels[1].payload_bytes, 0u);
  CheckScriptReplay(*plan, *script, options);
}

TEST(StreamScriptTest, BadOptionsAreRejected) {
  ThreadPool pool(1);
  const ElasticModel m = HeuristicTestModel(500, 4, 1);
  auto plan = PlanLevels(m, {.top_ratio = 0.1, .ladder = {}}, &pool);
  ASSERT_TRUE(plan.ok());
  const auto code = [&](ChunkEncoding enc, int sh, uint32_t chunk) {
    return BuildStreamScript(*plan, {.encoding = enc, .sh_degree = sh, .max_chunk_bytes = chunk}).status().code();
  };
  const auto q = ChunkEncoding::kQuantized;
  EXPECT_EQ(code(q, 1, 4096), absl::StatusCode::kOk);
  EXPECT_EQ(code(q, 0, 4 << 20), absl::StatusCode::kOk);
  EXPECT_EQ(code(q, 2, 4096), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(q, -1, 4096), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(q, 1, 4095), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(q, 1, 0), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(q, 1, (4 << 20) + 1), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(static_cast<ChunkEncoding>(0), 1, 4096), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(static_cast<ChunkEncoding>(3), 1, 4096), absl::StatusCode::kInvalidArgument);

  Plan broken = *plan;
  broken.levels[1].count += 1;
  EXPECT_EQ(BuildStreamScript(broken, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flexgs
