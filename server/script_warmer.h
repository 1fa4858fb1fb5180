// WarmDefaultScript: starts the canonical stream script that a plain request for a scene
// uses (the model's ladder and SH degree, quantized, the server's default chunk size) on
// the plan cache's workers as soon as the scene is loaded. Every budget cuts that one
// script, so the first clients of a new scene join or hit it instead of each waiting for a
// whole plan. Requests for other parameters (SH degree, encoding, chunk size, ladder) still
// plan on first use.
#pragma once

#include <cstdint>
#include <string>

#include "server/plan_cache.h"
#include "server/scene_registry.h"

namespace flexgs::server {

// Returns at once; a scene that is gone or whose default request does not resolve is
// logged and skipped (its requests will say why).
void WarmDefaultScript(const SceneRegistry& registry, PlanCache& cache, const std::string& scene_id,
                       uint32_t default_max_chunk_bytes, uint32_t max_client_chunk_bytes);

}  // namespace flexgs::server
