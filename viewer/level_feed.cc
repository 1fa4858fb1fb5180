#include "viewer/level_feed.h"

#include <chrono>
#include <utility>

#include "spdlog/spdlog.h"

namespace flexgs::viewer {

// Runs on the stream thread: copies each complete level out of the store (the store
// keeps changing as the next level arrives; the snapshot never does).
class LevelFeed::Observer : public client::StreamObserver {
 public:
  explicit Observer(LevelFeed* feed) : feed_(feed) {}
  void OnHeader(const v1::StreamHeader& header) override {
    std::lock_guard<std::mutex> lock(feed_->mu_);
    feed_->state_.levels = header.levels_size();
  }
  void OnProgress(uint64_t bytes, uint64_t expected) override {
    std::lock_guard<std::mutex> lock(feed_->mu_);
    feed_->state_.bytes = bytes;
    feed_->state_.expected_bytes = expected;
  }
  void OnLevelComplete(const client::LevelStats& stats, const client::ResidentStore& store) override {
    auto cloud = std::make_shared<const GaussianCloud>(store.ToHost());
    {
      std::lock_guard<std::mutex> lock(feed_->mu_);
      FeedState& s = feed_->state_;
      s.previous = std::move(s.current);
      s.current = std::move(cloud);
      if (feed_->keep_history_) s.history.push_back(s.current);
      s.level = stats.index;
      s.ratio = stats.ratio;
      ++s.version;
    }
    feed_->cv_.notify_all();
  }
  void OnRetry(const absl::Status& /*why*/, int attempt, std::chrono::milliseconds /*backoff*/) override {
    std::lock_guard<std::mutex> lock(feed_->mu_);
    feed_->state_.retries = attempt;
  }

 private:
  LevelFeed* feed_;
};

LevelFeed::~LevelFeed() { Stop(); }

void LevelFeed::Start(client::SceneClient* client, const client::StreamRequest& request, client::StreamOptions options,
                      bool keep_history) {
  keep_history_ = keep_history;
  client_ = client;
  request_ = request;
  options_ = std::move(options);
  assembler_ = std::make_unique<client::SceneAssembler>(&store_);
  Run(request_, /*extend=*/false);
}

void LevelFeed::Extend(double ratio) {
  Stop();
  request_.memory_bytes.reset();
  request_.gaussians.reset();
  request_.ratio = ratio;
  const bool extend = assembler_ != nullptr && assembler_->has_header();
  if (!extend) assembler_ = std::make_unique<client::SceneAssembler>(&store_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_.done = false;
    state_.status = absl::OkStatus();
    ++state_.version;
  }
  Run(request_, extend);
}

void LevelFeed::Run(client::StreamRequest request, bool extend) {
  cancel_ = std::make_unique<client::StreamCancel>();
  client::StreamOptions options = options_;
  options.cancel = cancel_.get();
  thread_ = std::thread([this, request = std::move(request), options, extend] {
    const auto t0 = std::chrono::steady_clock::now();
    Observer observer(this);
    auto summary = extend ? client_->Extend(request, options, *assembler_, &observer)
                          : client_->Stream(request, options, *assembler_, &observer);
    if (extend && summary.ok()) {
      spdlog::info("extended stream complete: {} Gaussians held, {} payload bytes received in all",
                   assembler_->store().size(), assembler_->payload_bytes());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      state_.done = true;
      state_.status = summary.ok() ? absl::OkStatus() : summary.status();
      state_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++state_.version;
    }
    cv_.notify_all();
  });
}

void LevelFeed::Stop() {
  if (cancel_) cancel_->Cancel();
  if (thread_.joinable()) thread_.join();
}

FeedState LevelFeed::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

FeedState LevelFeed::WaitForLevel(int level, double timeout_s) const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::duration<double>(timeout_s),
               [&] { return state_.done || (level >= 0 && state_.level >= level); });
  return state_;
}

}  // namespace flexgs::viewer
