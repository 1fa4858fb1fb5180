#include "server/plan_cache.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/status/status.h"

namespace flexgs::server {

PlanCache::PlanCache(const Options& options, Hooks hooks, ComputeFn compute)
    : options_(options), hooks_(std::move(hooks)), compute_(std::move(compute)) {
  const int workers = std::max(1, options_.workers);
  int threads = options_.threads_per_worker;
  if (threads <= 0) {
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::max(1, hw / workers);
  }
  workers_.reserve(workers);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this, threads] { WorkerLoop(threads); });
}

PlanCache::~PlanCache() {
  std::deque<Job> abandoned;
  std::vector<Done> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    abandoned.swap(queue_);
    for (Job& job : abandoned) {
      auto it = in_flight_.find(job.key);
      if (it == in_flight_.end()) continue;
      for (Done& d : it->second) waiters.push_back(std::move(d));
      in_flight_.erase(it);
    }
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  for (Done& d : waiters) d(absl::UnavailableError("the plan cache is shutting down"));
}

void PlanCache::Get(std::shared_ptr<const ElasticModel> model, const StreamParams& request_params, Done done) {
  // Every budget cuts the same canonical script: the key leaves the top ratio out.
  StreamParams params = request_params;
  params.top_ratio = 1.0;
  // The resume token is a canonical encoding of every parameter, digest included.
  std::string key = EncodeResumeToken(params);
  ScriptPtr hit;
  bool joined = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_) {
      lock.unlock();
      done(absl::UnavailableError("the plan cache is shutting down"));
      return;
    }
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      hit = it->second->script;
      ++counters_.hits;
    } else if (auto f = in_flight_.find(key); f != in_flight_.end()) {
      f->second.push_back(std::move(done));
      joined = true;
      ++counters_.hits;
    } else {
      in_flight_[key].push_back(std::move(done));
      queue_.push_back(Job{std::move(key), std::move(model), params});
      ++counters_.misses;
    }
  }
  if (hit != nullptr || joined) {
    if (hooks_.on_hit) hooks_.on_hit();
  } else {
    if (hooks_.on_miss) hooks_.on_miss();
    cv_.notify_one();
  }
  if (hit != nullptr) done(std::move(hit));
}

PlanCache::Stats PlanCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = counters_;
  s.entries = lru_.size();
  s.bytes = bytes_;
  return s;
}

size_t PlanCache::EvictModel(const std::string& digest) {
  size_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = lru_.begin(); it != lru_.end();) {
      if (it->digest != digest) {
        ++it;
        continue;
      }
      bytes_ -= it->bytes;
      index_.erase(it->key);
      it = lru_.erase(it);
      ++dropped;
    }
  }
  ReportSize();
  return dropped;
}

void PlanCache::ReportSize() {
  if (!hooks_.on_size) return;
  const Stats s = stats();
  hooks_.on_size(s.entries, s.bytes);
}

void PlanCache::InsertLocked(const std::string& key, const std::string& digest, const ScriptPtr& script) {
  const uint64_t bytes = script->ByteSize();
  if (bytes > options_.capacity_bytes) return;  // would evict everything and still not fit
  while (!lru_.empty() && bytes_ + bytes > options_.capacity_bytes) {
    bytes_ -= lru_.back().bytes;
    index_.erase(lru_.back().key);
    lru_.pop_back();
    ++counters_.evictions;
  }
  lru_.push_front(Entry{key, digest, script, bytes});
  index_[key] = lru_.begin();
  bytes_ += bytes;
}

void PlanCache::WorkerLoop(int threads) {
  ThreadPool pool(threads);
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ with nothing left to do
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<WireScript> built = compute_(*job.model, job.params, &pool);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    absl::StatusOr<ScriptPtr> result =
        built.ok() ? absl::StatusOr<ScriptPtr>(std::make_shared<const WireScript>(*std::move(built)))
                   : absl::StatusOr<ScriptPtr>(built.status());
    std::vector<Done> waiters;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (result.ok()) InsertLocked(job.key, job.params.model_digest, *result);
      auto it = in_flight_.find(job.key);
      if (it != in_flight_.end()) {
        waiters = std::move(it->second);
        in_flight_.erase(it);
      }
    }
    job.model.reset();  // a scene's model may be dropped while its plan was computing
    if (hooks_.on_computed) hooks_.on_computed(seconds);
    if (result.ok()) ReportSize();
    for (Done& d : waiters) d(result);
  }
}

}  // namespace flexgs::server
