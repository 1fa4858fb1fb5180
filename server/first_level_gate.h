// FirstLevelGate: streams past their first level wait while younger streams are still
// sending theirs, so that a burst of new clients each gets a picture before anyone
// gets a refinement.
//
// Why: on a loaded server every running stream's next message competes with the new
// calls gRPC has not yet taken. With a burst of N calls, the last one's first message
// waited for about N streams' worth of messages (bench/RESULTS.md). Holding back
// the refinements of streams that already have their first level lets the threads
// take and answer the new calls first.
//
// Bounded: a stream counts as "young" for `max_wait` after it entered, and a waiter
// is released at the latest `max_wait` after it parked, so a slow client that never
// finishes its first level, or a steady arrival of new streams, cannot starve others:
// under the worst case a waiting stream still sends one message every `max_wait`.
#ifndef FLEXGS_SERVER_FIRST_LEVEL_GATE_H_
#define FLEXGS_SERVER_FIRST_LEVEL_GATE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>
#include <thread>

namespace flexgs::server {

class FirstLevelGate {
 public:
  using Clock = std::chrono::steady_clock;

  // A stream that parked.
  class Waiter {
   public:
    virtual ~Waiter() = default;
    // Once per successful Park, on the gate's thread (or in ~FirstLevelGate), never
    // under the gate's lock. The waiter may be deleted once it returns.
    virtual void OnGateOpen() = 0;
  };

  // A stream still sending its first level; Leave it exactly once.
  class Entry {
   private:
    friend class FirstLevelGate;
    std::list<Clock::time_point>::iterator it_;
    bool in_ = false;
  };

  explicit FirstLevelGate(std::chrono::milliseconds max_wait);
  ~FirstLevelGate();  // releases every waiter, then joins the thread
  FirstLevelGate(const FirstLevelGate&) = delete;
  FirstLevelGate& operator=(const FirstLevelGate&) = delete;

  // A stream starts (its first level is to come). Idempotent per entry.
  void Enter(Entry* entry);
  // Its first level is sent, or it ended. Idempotent; no-op for an entry not in.
  void Leave(Entry* entry);

  // True: some stream entered less than max_wait ago is still in its first level, and
  // `waiter` is parked: OnGateOpen follows once none is, or max_wait from now at the
  // latest. False: go ahead (nothing parked). The caller must be ready for OnGateOpen
  // to run on another thread before Park returns.
  bool Park(Waiter* waiter);

  // Introspection (tests, metrics).
  uint64_t parked_total() const;

 private:
  struct Parked {
    Waiter* waiter;
    Clock::time_point until;
  };
  bool BusyLocked(Clock::time_point now) const;
  void Run();

  const std::chrono::milliseconds max_wait_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::list<Clock::time_point> entered_;  // entry times, oldest first
  std::list<Parked> parked_;              // in parking order: `until` ascending
  uint64_t parked_total_ = 0;
  std::thread thread_;
};

}  // namespace flexgs::server

#endif  // FLEXGS_SERVER_FIRST_LEVEL_GATE_H_
