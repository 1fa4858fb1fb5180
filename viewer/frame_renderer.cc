#include "viewer/frame_renderer.h"

#include <chrono>
#include <utility>

namespace flexgs::viewer {

FrameRenderer::FrameRenderer(RasterBackend* backend, RenderOptions options)
    : backend_(backend), options_(std::move(options)), thread_([this] { Loop(); }) {}

FrameRenderer::~FrameRenderer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t FrameRenderer::Submit(std::shared_ptr<const GaussianCloud> cloud, const Camera& camera) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_ = Pending{std::move(cloud), camera, ++submitted_};
  cv_.notify_all();
  return submitted_;
}

std::optional<FrameRenderer::Frame> FrameRenderer::TakeFrame() {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<Frame> f = std::move(done_);
  done_.reset();
  return f;
}

bool FrameRenderer::busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.has_value() || rendering_;
}

absl::Status FrameRenderer::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void FrameRenderer::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || pending_.has_value(); });
    if (stop_) return;
    Pending job = std::move(*pending_);
    pending_.reset();
    rendering_ = true;
    lock.unlock();
    const auto t0 = std::chrono::steady_clock::now();
    auto result = backend_->Render(*job.cloud, job.camera, options_);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    lock.lock();
    rendering_ = false;
    if (!result.ok()) {
      if (status_.ok()) status_ = result.status();
      continue;
    }
    done_ = Frame{std::move(result->color), ms, job.id};
  }
}

}  // namespace flexgs::viewer
