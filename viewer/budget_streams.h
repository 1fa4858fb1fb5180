// BudgetStreams: the window's streams when its budget can change. A larger budget
// extends the stream shown in place (every budget's stream is a prefix of one canonical
// stream, so nothing held is sent again). A smaller one streams again from the start,
// since the levels held exceed it; the old levels stay on screen until that stream ends,
// so the picture never goes back to empty.
#pragma once

#include <memory>

#include "client/scene_client.h"
#include "viewer/level_feed.h"

namespace flexgs::viewer {

// The budget steps the window's ] and [ keys move between, in percent of the scene: the
// next step above (`up`) or below `percent`, staying within [1, 100].
float NextBudgetStep(float percent, bool up);

class BudgetStreams {
 public:
  // Starts streaming `request`; `client` must outlive this object.
  BudgetStreams(client::SceneClient* client, client::StreamRequest request, client::StreamOptions options);

  // Streams the scene at top ratio `ratio` in (0, 1] (the request's other budget kinds
  // cleared): above the shown stream's ratio by extending it, below by a new stream. A
  // restart before the previous one was shown replaces it.
  void Restart(double ratio);
  // The state to show; switches to the restarted stream once it holds more Gaussians
  // than the one shown, or has ended (the old stream is then stopped).
  FeedState State();
  // A restarted stream is still catching up.
  bool restarting() const { return next_ != nullptr; }

 private:
  client::SceneClient* client_;
  client::StreamRequest request_;
  client::StreamOptions options_;
  double shown_ratio_ = 0;  // the top ratio the shown stream was asked for (0: not a ratio)
  std::unique_ptr<LevelFeed> shown_, next_;
};

}  // namespace flexgs::viewer
