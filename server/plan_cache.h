// PlanCache: prepared streams (WireScript) keyed by (model digest, StreamParams),
// computed off the gRPC threads and shared by every stream that asks for the same
// thing.
//
// - Bounded LRU: entries are charged WireScript::ByteSize(); the least recently used
//   go first when the total would exceed the capacity. A script larger than the
//   whole capacity is delivered but not kept.
// - Single flight: while a key is being computed, further requests for it join the
//   computation instead of starting another (they count as hits: they did not cause
//   a computation). Errors are delivered to every waiter and never cached.
// - Computations run on the cache's own worker threads, each with its own ThreadPool
//   for the planner's data-parallel loops; callers never block.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "base/thread_pool.h"
#include "elastic/elastic_model.h"
#include "server/wire_script.h"
#include "stream/resume_token.h"

namespace flexgs::server {

class PlanCache {
 public:
  using ScriptPtr = std::shared_ptr<const WireScript>;
  using Done = std::function<void(absl::StatusOr<ScriptPtr>)>;
  using ComputeFn = std::function<absl::StatusOr<WireScript>(const ElasticModel&, const StreamParams&, ThreadPool*)>;

  struct Options {
    uint64_t capacity_bytes = uint64_t{1} << 30;
    int workers = 2;             // computations that may run at once
    int threads_per_worker = 0;  // planner threads per computation; 0 = hardware threads / workers
  };

  // Observers for metrics; each may be empty. Called without the cache's lock held.
  struct Hooks {
    std::function<void()> on_hit;
    std::function<void()> on_miss;
    std::function<void(double seconds)> on_computed;  // after every computation, ok or not
    // After the cached scripts changed (inserted, evicted, dropped): how many, how many bytes.
    std::function<void(uint64_t entries, uint64_t bytes)> on_size;
  };

  struct Stats {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;
    uint64_t entries = 0;
    uint64_t bytes = 0;
  };

  explicit PlanCache(const Options& options, Hooks hooks = {}, ComputeFn compute = BuildWireScript);
  // Lets running computations finish (and deliver), fails queued ones with
  // UNAVAILABLE, and joins the workers. Destroy only after the gRPC server has shut
  // down, so that no stream is still waiting.
  ~PlanCache();
  PlanCache(const PlanCache&) = delete;
  PlanCache& operator=(const PlanCache&) = delete;

  // Delivers the script for (model, params) to `done`, exactly once: inline on the
  // calling thread for a cached script, otherwise on a worker thread. `model` must
  // be the model whose digest is params.model_digest. The key (and what the compute
  // function sees) has top_ratio 1: scripts are canonical streams that every budget
  // cuts (WireCut), so budgets do not multiply plans.
  void Get(std::shared_ptr<const ElasticModel> model, const StreamParams& params, Done done);

  // Drops the cached scripts of the model `digest`, one the registry no longer serves
  // (replaced or removed by a rescan). Keys include the digest, so a new model never
  // gets an old model's script; this gives the memory back at once instead of when
  // the LRU gets round to it. Streams using a dropped script keep their shared copy.
  // Returns how many entries were dropped.
  size_t EvictModel(const std::string& digest);

  Stats stats() const;

 private:
  struct Entry {
    std::string key;
    std::string digest;  // the model's, for EvictModel
    ScriptPtr script;
    uint64_t bytes = 0;
  };
  struct Job {
    std::string key;
    std::shared_ptr<const ElasticModel> model;
    StreamParams params;
  };

  void WorkerLoop(int threads);
  // Calls hooks_.on_size with the cache's size now (takes mu_ itself).
  void ReportSize();
  // Inserts under mu_; evicts to make room.
  void InsertLocked(const std::string& key, const std::string& digest, const ScriptPtr& script);

  const Options options_;
  const Hooks hooks_;
  const ComputeFn compute_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  std::unordered_map<std::string, std::vector<Done>> in_flight_;  // key -> waiters
  std::deque<Job> queue_;
  uint64_t bytes_ = 0;
  Stats counters_;
  std::vector<std::thread> workers_;
};

}  // namespace flexgs::server
