// FrameRenderer: renders the window's frames on a thread of its own. The window posts
// the newest (cloud, camera) and picks up whichever frame finished last, never waiting
// for one; a request not yet started is replaced by a newer one, so a moving view
// never queues stale frames.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/status/status.h"
#include "render/rasterizer.h"
#include "scene/camera.h"
#include "scene/gaussian_cloud.h"
#include "scene/image.h"

namespace flexgs::viewer {

class FrameRenderer {
 public:
  struct Frame {
    Image image;
    double render_ms = 0;
    uint64_t request = 0;  // which Submit() it answers
  };

  // `backend` must outlive the renderer; it is used from the renderer's thread only.
  FrameRenderer(RasterBackend* backend, RenderOptions options);
  ~FrameRenderer();  // finishes the frame in progress, drops a pending one
  FrameRenderer(const FrameRenderer&) = delete;
  FrameRenderer& operator=(const FrameRenderer&) = delete;

  // Replaces any request not yet started; returns its number (1, 2, ...).
  uint64_t Submit(std::shared_ptr<const GaussianCloud> cloud, const Camera& camera);
  // The newest finished frame, if one finished since the last call.
  std::optional<Frame> TakeFrame();
  // A request is pending or rendering.
  bool busy() const;
  // The first render error, if any (later requests still run).
  absl::Status status() const;

 private:
  struct Pending {
    std::shared_ptr<const GaussianCloud> cloud;
    Camera camera;
    uint64_t id = 0;
  };
  void Loop();

  RasterBackend* backend_;
  RenderOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Pending> pending_;
  std::optional<Frame> done_;
  bool rendering_ = false, stop_ = false;
  uint64_t submitted_ = 0;
  absl::Status status_;
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace flexgs::viewer
