// LevelFeed: receives a scene's nested levels on a thread of its own and hands the
// window (or a script) the latest complete level as an immutable snapshot, so that
// neither side ever waits for the other: the stream keeps reading while a frame
// renders, and a frame never waits for the network.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "client/resident_store.h"
#include "client/scene_assembler.h"
#include "client/scene_client.h"
#include "scene/gaussian_cloud.h"

namespace flexgs::viewer {

// What the window shows: the newest complete level and the one before it (the compare
// toggle), plus the stream's progress.
struct FeedState {
  std::shared_ptr<const GaussianCloud> current;   // null until the first level lands
  std::shared_ptr<const GaussianCloud> previous;  // null until the second
  // Every level so far, by index, when Start() was asked to keep them (scripts show the
  // level they waited for, however far the stream has gone since); else empty.
  std::vector<std::shared_ptr<const GaussianCloud>> history;
  int level = -1;               // index of `current`
  int levels = 0;               // in the stream (0 before its header)
  double ratio = 0;             // of `current`
  uint64_t bytes = 0;           // verified payload bytes so far
  uint64_t expected_bytes = 0;  // the header's estimate of the total
  double seconds = 0;           // since Start()
  int retries = 0;
  bool done = false;     // the stream ended (see `status`)
  absl::Status status;   // OK, or why it ended early
  uint64_t version = 0;  // changes whenever a level lands or it ends
};

class LevelFeed {
 public:
  LevelFeed() = default;
  ~LevelFeed();  // Stop()
  LevelFeed(const LevelFeed&) = delete;
  LevelFeed& operator=(const LevelFeed&) = delete;

  // Starts streaming `request` through `client` (which must outlive the feed). With
  // `keep_history` every level's snapshot stays in state().history (the levels of a
  // nested stream sum to about twice the last, so only for scripts, not the window).
  void Start(client::SceneClient* client, const client::StreamRequest& request, client::StreamOptions options,
             bool keep_history = false);
  // Continues the stream to the larger top ratio `ratio` in place (flexgs.v1 `extend`):
  // whatever was received -- a whole stream or one still arriving, which is stopped
  // first -- is kept and only the rest is sent; state() keeps showing the levels held
  // until the next one lands. Before the first header arrives it streams afresh. A
  // smaller ratio is refused by the server (state().status then says so).
  void Extend(double ratio);
  // Cancels the stream and joins its thread; what was received stays in state().
  void Stop();

  FeedState state() const;
  // Blocks until level `level` is complete (or the stream ends, or `timeout_s` passes);
  // level < 0 waits for the end of the stream. Returns the state then.
  FeedState WaitForLevel(int level, double timeout_s) const;

 private:
  class Observer;
  // Runs `request` on the stream thread: a fresh stream, or an extension of what the
  // assembler holds.
  void Run(client::StreamRequest request, bool extend);

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  FeedState state_;
  bool keep_history_ = false;
  client::SceneClient* client_ = nullptr;
  client::StreamRequest request_;
  client::StreamOptions options_;
  // What was received, kept across an extension (only the stream thread touches them
  // while it runs).
  client::HostResidentStore store_;
  std::unique_ptr<client::SceneAssembler> assembler_;
  std::unique_ptr<client::StreamCancel> cancel_;  // one per run: a cancel is final
  std::thread thread_;
};

}  // namespace flexgs::viewer
