// BudgetStreams: the window's streams when its budget can change -- the one shown and,
// after the budget control moved, the one replacing it. The protocol cannot extend a
// stream from what the client holds yet, so a new budget streams again from the start;
// the old levels stay on screen until the new stream holds more Gaussians (or ends), so
// the picture never goes back to empty.
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

  // Streams the scene again at top ratio `ratio` in (0, 1] (the request's other budget
  // kinds cleared). A restart before the previous one was shown replaces it.
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
  std::unique_ptr<LevelFeed> shown_, next_;
};

}  // namespace flexgs::viewer
