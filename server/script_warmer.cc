#include "server/script_warmer.h"

#include "server/log_escape.h"
#include "server/stream_request.h"
#include "spdlog/spdlog.h"

namespace flexgs::server {

void WarmDefaultScript(const SceneRegistry& registry, PlanCache& cache, const std::string& scene_id,
                       uint32_t default_max_chunk_bytes, uint32_t max_client_chunk_bytes) {
  // The same resolution a client's request goes through, so the key is the one it uses.
  v1::StreamSceneRequest request;
  request.set_scene_id(scene_id);
  request.set_ratio(1.0);
  auto resolved = ResolveStreamRequest(registry, request, default_max_chunk_bytes, max_client_chunk_bytes);
  if (!resolved.ok()) {
    spdlog::warn("not warming scene '{}': {}", EscapeClientString(scene_id), std::string(resolved.status().message()));
    return;
  }
  const std::string id = EscapeClientString(scene_id);
  cache.Get(resolved->scene->model, resolved->params, [id](absl::StatusOr<PlanCache::ScriptPtr> script) {
    if (!script.ok()) spdlog::warn("warming scene '{}' failed: {}", id, std::string(script.status().message()));
  });
}

}  // namespace flexgs::server
