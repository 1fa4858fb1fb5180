#include "server/first_level_gate.h"

#include <algorithm>
#include <vector>

namespace flexgs::server {

FirstLevelGate::FirstLevelGate(std::chrono::milliseconds max_wait) : max_wait_(max_wait) {
  thread_ = std::thread([this] { Run(); });
}

FirstLevelGate::~FirstLevelGate() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  // Nobody parks after the owner stops using the gate; release any left.
  std::list<Parked> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(parked_);
  }
  for (const Parked& p : left) p.waiter->OnGateOpen();
}

void FirstLevelGate::Enter(Entry* entry) {
  std::lock_guard<std::mutex> lock(mu_);
  if (entry->in_) return;
  entry->it_ = entered_.insert(entered_.end(), Clock::now());
  entry->in_ = true;
}

void FirstLevelGate::Leave(Entry* entry) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!entry->in_) return;
    entered_.erase(entry->it_);
    entry->in_ = false;
    // The thread sleeps until the youngest entry ages out; that may be earlier now.
    wake = !parked_.empty();
  }
  if (wake) wake_.notify_one();
}

bool FirstLevelGate::BusyLocked(Clock::time_point now) const {
  // Entry times only grow, so the youngest entry decides.
  return !entered_.empty() && now - entered_.back() < max_wait_;
}

bool FirstLevelGate::Park(Waiter* waiter) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = Clock::now();
  if (stop_ || !BusyLocked(now)) return false;
  // The thread sleeps until the earliest release; a new first waiter may be earlier.
  const bool first = parked_.empty();
  parked_.push_back({waiter, now + max_wait_});
  ++parked_total_;
  if (first) wake_.notify_one();
  return true;
}

uint64_t FirstLevelGate::parked_total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return parked_total_;
}

void FirstLevelGate::Run() {
  std::vector<Waiter*> open;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (parked_.empty()) {
      wake_.wait(lock, [this] { return stop_ || !parked_.empty(); });
      continue;
    }
    const auto now = Clock::now();
    open.clear();
    if (!BusyLocked(now)) {
      for (const Parked& p : parked_) open.push_back(p.waiter);
      parked_.clear();
    } else {
      while (!parked_.empty() && parked_.front().until <= now) {
        open.push_back(parked_.front().waiter);
        parked_.pop_front();
      }
    }
    if (open.empty()) {
      // Until the first waiter's limit or the youngest entry ages out, whichever is
      // first; Leave wakes us when the gate opens earlier.
      const auto until = std::min(parked_.front().until, entered_.back() + max_wait_);
      wake_.wait_until(lock, until);
      continue;
    }
    // OnGateOpen starts writes (and may finish calls): never under mu_.
    lock.unlock();
    for (Waiter* w : open) w->OnGateOpen();
    lock.lock();
  }
}

}  // namespace flexgs::server
