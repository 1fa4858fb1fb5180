#include "server/scene_rescanner.h"

#include <utility>

#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"

namespace flexgs::server {

SceneRescanner::SceneRescanner(SceneRegistry* registry, PlanCache* cache, Options options)
    : registry_(registry), cache_(cache), options_(std::move(options)) {}

SceneRescanner::~SceneRescanner() { Stop(); }

void SceneRescanner::Start() {
  if (thread_.joinable() || stop_.load()) return;
  thread_ = std::thread([this] { Loop(); });
}

void SceneRescanner::Request() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    requested_ = true;
  }
  cv_.notify_one();
}

void SceneRescanner::RequestStop() {
  {
    // Under the lock, so the thread cannot miss the notification between its check and its wait.
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  cv_.notify_one();
}

void SceneRescanner::Stop() {
  RequestStop();
  if (thread_.joinable()) thread_.join();
}

void SceneRescanner::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto wake = [this] { return stop_.load() || requested_; };
      if (options_.interval.count() > 0) {
        cv_.wait_for(lock, options_.interval, wake);
      } else {
        cv_.wait(lock, wake);
      }
      if (stop_.load()) return;
      requested_ = false;
    }
    RescanOnce();
  }
}

void SceneRescanner::RescanOnce() {
  absl::StatusOr<RescanResult> result = registry_->Rescan(options_.dir, options_.load, &stop_);
  rescans_.fetch_add(1);
  if (!result.ok()) {
    if (options_.on_failures) options_.on_failures(1);
    // Keep serving what is loaded; say so once, not on every interval.
    const std::string error(result.status().message());
    if (error != last_error_) {
      spdlog::error("rescan: {}; still serving the {} scene(s) loaded", error, registry_->size());
    }
    last_error_ = error;
    return;
  }
  if (!result->failed.empty() && options_.on_failures) options_.on_failures(result->failed.size());
  if (options_.on_loaded && (!result->added.empty() || !result->replaced.empty())) {
    std::vector<std::string> loaded = result->added;
    loaded.insert(loaded.end(), result->replaced.begin(), result->replaced.end());
    options_.on_loaded(loaded);
  }
  if (!last_error_.empty()) spdlog::info("rescan: {} can be listed again", options_.dir);
  last_error_.clear();
  size_t dropped = 0;
  if (cache_ != nullptr) {
    for (const std::string& digest : result->retired_digests) dropped += cache_->EvictModel(digest);
  }
  if (result->changed() || !result->failed.empty()) {
    spdlog::info(
        "rescan of {}: added [{}], replaced [{}], removed [{}], failed [{}]; {} cached plan(s) of retired "
        "models dropped; serving {} scene(s)",
        options_.dir, absl::StrJoin(result->added, ","), absl::StrJoin(result->replaced, ","),
        absl::StrJoin(result->removed, ","), absl::StrJoin(result->failed, ","), dropped, registry_->size());
  } else {
    spdlog::debug("rescan of {}: no change", options_.dir);
  }
}

}  // namespace flexgs::server
