#include "server/stall_sweeper.h"

#include <vector>

namespace flexgs::server {

StallSweeper::StallSweeper(std::chrono::milliseconds period) : period_(period) {
  thread_ = std::thread([this] { Run(); });
}

StallSweeper::~StallSweeper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void StallSweeper::Add(StallWatch* watch) {
  std::lock_guard<std::mutex> lock(mu_);
  watches_.insert(watch);
}

void StallSweeper::Remove(StallWatch* watch) {
  std::lock_guard<std::mutex> lock(mu_);
  watches_.erase(watch);
}

void StallSweeper::Run() {
  std::vector<StallWatch*> stalled;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    wake_.wait_for(lock, period_, [this] { return stop_; });
    if (stop_) break;
    const auto now = std::chrono::steady_clock::now();
    stalled.clear();
    for (StallWatch* w : watches_) {
      if (w->MarkIfStalled(now)) stalled.push_back(w);
    }
    if (stalled.empty()) continue;
    // OnStalled cancels the call, which may finish it: never under mu_ (Remove).
    lock.unlock();
    for (StallWatch* w : stalled) w->OnStalled();
    lock.lock();
  }
}

}  // namespace flexgs::server
