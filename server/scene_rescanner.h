// SceneRescanner: hot reload. After start-up it keeps a SceneRegistry in line with
// its scenes directory (SceneRegistry::Rescan) on a thread of its own -- every
// `interval` and whenever Request() is called (the server's SIGHUP) -- so models are
// read, validated and (for plain PLYs) given their Global Importance off the gRPC
// threads, and swapped in only when complete. The cached plans of every model a
// rescan retires are dropped from the PlanCache at once (their keys carry the old
// digest, so they could never be served for the new model anyway).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/plan_cache.h"
#include "server/scene_registry.h"

namespace flexgs::server {

class SceneRescanner {
 public:
  struct Options {
    std::string dir;
    SceneLoadOptions load;
    std::chrono::milliseconds interval{0};  // between periodic rescans; 0: only on Request()
    // Called (on the rescanner's thread) with the number of scenes that failed to
    // load in a rescan, or 1 when the directory could not be listed; never with 0.
    std::function<void(uint64_t)> on_failures;
    // Called (on the rescanner's thread) with the ids of the scenes a rescan added or
    // replaced, e.g. to warm their stream scripts; never with an empty list.
    std::function<void(const std::vector<std::string>&)> on_loaded;
  };

  // `registry` and `cache` (may be null) must outlive the rescanner.
  SceneRescanner(SceneRegistry* registry, PlanCache* cache, Options options);
  ~SceneRescanner();  // Stop()
  SceneRescanner(const SceneRescanner&) = delete;
  SceneRescanner& operator=(const SceneRescanner&) = delete;

  // Starts the thread; call once, after the initial load. Requests made before are kept.
  void Start();
  // Asks for a rescan as soon as the thread is free (several requests meanwhile: one rescan).
  void Request();
  // No new rescan, and a running one stops before its next scene. Does not wait.
  void RequestStop();
  // RequestStop, then waits for the thread (a scene being loaded is finished first).
  void Stop();

  uint64_t rescans() const { return rescans_.load(); }  // completed, including failed listings

 private:
  void Loop();
  void RescanOnce();

  SceneRegistry* const registry_;
  PlanCache* const cache_;
  const Options options_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> rescans_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool requested_ = false;  // guarded by mu_
  std::string last_error_;  // only touched by the thread: a failed listing is logged once
  std::thread thread_;
};

}  // namespace flexgs::server
