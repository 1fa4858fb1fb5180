// FrameRenderer: frames rendered off the window's thread, newest request wins.
#include "viewer/frame_renderer.h"

#include <chrono>
#include <memory>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "scene/orbit.h"
#include "tests/support/test_models.h"

namespace flexgs::viewer {
namespace {

std::optional<FrameRenderer::Frame> WaitForFrame(FrameRenderer& r) {
  for (int i = 0; i < 2000; ++i) {
    if (auto f = r.TakeFrame()) return f;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::nullopt;
}

TEST(FrameRendererTest, RendersWhatTheBackendRendersOffThread) {
  std::mt19937 rng(3);
  auto cloud = std::make_shared<const GaussianCloud>(flexgs::testing::RandomCloud(500, 1, rng));
  auto backend = CreateRasterBackend(Device::kCpu, 1);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto reference_backend = CreateRasterBackend(Device::kCpu, 1);
  ASSERT_TRUE(reference_backend.ok());
  OrbitOptions orbit;
  orbit.count = 2;
  orbit.width = 64;
  orbit.height = 48;
  const std::vector<Camera> cams = OrbitCameras(RobustBounds(*cloud), orbit);
  FrameRenderer renderer(backend->get(), RenderOptions{});
  EXPECT_FALSE(renderer.TakeFrame().has_value());
  const uint64_t id = renderer.Submit(cloud, cams[1]);
  EXPECT_EQ(id, 1u);
  auto frame = WaitForFrame(renderer);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->request, 1u);
  auto want = (*reference_backend)->Render(*cloud, cams[1], RenderOptions{});
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(frame->image.pixels, want->color.pixels) << "the same pixels as a direct render";
  EXPECT_GE(frame->render_ms, 0.0);
  EXPECT_FALSE(renderer.TakeFrame().has_value()) << "each frame is handed over once";
  EXPECT_TRUE(renderer.status().ok());
}

TEST(FrameRendererTest, TheNewestRequestWins) {
  std::mt19937 rng(4);
  auto cloud = std::make_shared<const GaussianCloud>(flexgs::testing::RandomCloud(20'000, 0, rng));
  auto backend = CreateRasterBackend(Device::kCpu, 1);
  ASSERT_TRUE(backend.ok());
  OrbitOptions orbit;
  orbit.count = 1;
  orbit.width = 256;
  orbit.height = 256;
  const Camera cam = OrbitCameras(RobustBounds(*cloud), orbit)[0];
  FrameRenderer renderer(backend->get(), RenderOptions{});
  uint64_t last = 0;
  for (int i = 0; i < 20; ++i) last = renderer.Submit(cloud, cam);  // faster than it renders
  uint64_t seen = 0;
  int frames = 0;
  for (int i = 0; i < 4000 && seen != last; ++i) {
    if (auto f = renderer.TakeFrame()) {
      EXPECT_GT(f->request, seen) << "frames come newest-last";
      seen = f->request;
      ++frames;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  EXPECT_EQ(seen, last) << "the last request is always rendered";
  EXPECT_LT(frames, 20) << "requests that were replaced before they started are skipped";
  EXPECT_FALSE(renderer.busy());
}

}  // namespace
}  // namespace flexgs::viewer
