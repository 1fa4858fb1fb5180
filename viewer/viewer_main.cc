// flexgs-view: fly through a scene while its nested levels arrive.
//
//   flexgs-view --server HOST:PORT --scene NAME [--budget 256MiB | --budget-ratio 0.15 | auto]
//
// Connects with the client library, declares the budget, and shows the scene as soon
// as the first level is complete, refining in place as each level lands. Mouse: left
// drag orbits, right drag pans, the wheel zooms; W/A/S/D/Q/E fly, R resets the view,
// P writes a screenshot, C shows the previous level (compare), ] and [ raise and lower
// the budget (as does the overlay's slider), Esc quits. The overlay shows the level,
// Gaussians held, bytes received, resident memory against the budget, link rate and
// frame time.
//
// The stream runs on its own thread (LevelFeed) and frames render on another
// (FrameRenderer), so the window never waits for either: while the view moves, frames
// render at a reduced resolution that keeps about 20 frames a second, and at full
// resolution once it is still. Rendering uses CUDA when present (the frame is copied
// to an OpenGL texture through the host) and the CPU rasterizer otherwise.
//
// --headless --script FILE runs a camera path (viewer/view_script.h) without a window
// and writes its frames to --out: for tests and for making videos.
//
// Exit codes: 0 done, 1 bad arguments or no display, 2 server or stream error, 4 a
// local error (rendering, writing files).
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_opengl2.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "base/file_io.h"
#include "client/budget_spec.h"
#include "client/channel_credentials.h"
#include "client/renderer_memory.h"
#include "client/scene_client.h"
#include "io/png_io.h"
#include "kernels/backend.h"
#include "scene/image.h"
#include "spdlog/spdlog.h"
#include "stream/wire_layout.h"
#include "viewer/budget_streams.h"
#include "viewer/frame_renderer.h"
#include "viewer/level_feed.h"
#include "viewer/view_controller.h"
#include "viewer/view_script.h"

namespace fs = std::filesystem;
namespace fc = flexgs::client;
namespace fv = flexgs::viewer;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string server = "127.0.0.1:50051", scene, budget = "auto", out = "flexgs-view-out";
  double budget_ratio = 0;
  uint64_t budget_gaussians = 0;
  int width = 1280, height = 720;
  double fov_x_deg = 50.0;
  std::string background = "0,0,0", device = "auto", max_bandwidth, script;
  int threads = 0;
  bool headless = false;
  double give_up_after_s = 30, level_timeout_s = 120;
  std::string tls_ca, tls_cert, tls_key, token_file;
};

// One line naming the error's kind (the gRPC code of a server error) and what it was.
int Fail(int code, const absl::Status& status) {
  std::cerr << "flexgs-view: " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
  return code;
}

// Framebuffer and scratch the window's renders take, kept out of the declared budget:
// an RGB float image, its 8-bit copy and the rasterizer's per-pixel buffers.
uint64_t FramebufferBytes(int width, int height) { return static_cast<uint64_t>(width) * height * 32; }

// The request for the budget flags: a byte budget (or "auto") less the framebuffer, a
// ratio or a Gaussian count.
absl::StatusOr<fc::StreamRequest> BuildRequest(const Args& args, bool on_gpu) {
  fc::StreamRequest r;
  r.scene_id = args.scene;
  if (args.budget_ratio > 0) {
    r.ratio = args.budget_ratio;
    return r;
  }
  if (args.budget_gaussians > 0) {
    r.gaussians = args.budget_gaussians;
    return r;
  }
  auto spec = fc::ParseBudgetSpec(args.budget);
  if (!spec.ok()) return spec.status();
  if (spec->kind != fc::BudgetSpec::Kind::kAuto && spec->kind != fc::BudgetSpec::Kind::kBytes) {
    return absl::InvalidArgumentError("--budget takes a size or auto; use --budget-ratio or --budget-gaussians");
  }
  auto probe = fc::ProbeForBudget(*spec, on_gpu);
  if (!probe.ok()) return probe.status();
  auto budget = fc::ResolveByteBudget(*spec, *probe);
  if (!budget.ok()) return budget.status();
  const uint64_t bytes = budget->bytes;
  const uint64_t frame = FramebufferBytes(args.width, args.height);
  if (bytes <= frame) {
    return absl::InvalidArgumentError(absl::StrFormat("budget %s does not cover the %dx%d window's framebuffer (%s)",
                                                      fc::FormatBytes(bytes), args.width, args.height,
                                                      fc::FormatBytes(frame)));
  }
  r.memory_bytes = bytes - frame;
  return r;
}

// Attribute bytes of what is held (float32, as the client's store keeps it).
uint64_t HeldBytes(const std::shared_ptr<const flexgs::GaussianCloud>& cloud) {
  return cloud ? flexgs::RawBytesPerGaussian(cloud->sh_degree) * cloud->size() : 0;
}

// One line for the overlay and the log: what is held and what it cost.
std::string ProgressLine(const fv::FeedState& s, uint64_t budget_bytes, double elapsed_s) {
  const uint64_t held = s.current ? s.current->size() : 0;
  const double rate = elapsed_s > 0 ? 8.0 * static_cast<double>(s.bytes) / elapsed_s / 1e6 : 0;
  return absl::StrFormat("level %d/%d (%.1f%%)  %d Gaussians  %s received  %s resident of %s  %.1f Mbit/s", s.level + 1,
                         s.levels, 100 * s.ratio, held, fc::FormatBytes(s.bytes), fc::FormatBytes(HeldBytes(s.current)),
                         budget_bytes ? fc::FormatBytes(budget_bytes) : std::string("-"), rate);
}

// ---------------------------------------------------------------------------------------
// Headless: a script of camera moves and frames.

int RunScript(const Args& args, fv::LevelFeed& feed, fv::ViewController& view, flexgs::RasterBackend& backend,
              const flexgs::RenderOptions& render_options) {
  auto text = flexgs::ReadFileToString(args.script);
  if (!text.ok()) return Fail(1, text.status());
  auto steps = fv::ParseViewScript(*text);
  if (!steps.ok()) return Fail(1, steps.status());
  bool compare = false;
  int shown = -1;  // the level the last wait-level named (-1: the newest)
  for (const fv::ScriptStep& step : *steps) {
    using K = fv::ScriptStep::Kind;
    switch (step.kind) {
      case K::kWaitLevel: {
        const int level = static_cast<int>(step.args[0]);
        const fv::FeedState s = feed.WaitForLevel(level, args.level_timeout_s);
        if (!s.status.ok()) return Fail(2, s.status);
        if (level >= 0 && s.level < level) {
          return Fail(2, absl::DeadlineExceededError(absl::StrFormat(
                             "script line %d: level %d did not arrive (the stream has %d levels; waited %.0f s)",
                             step.line, level, s.levels, args.level_timeout_s)));
        }
        if (level < 0 && !s.done) {
          return Fail(2, absl::DeadlineExceededError(absl::StrFormat(
                             "script line %d: the stream did not end within %.0f s", step.line, args.level_timeout_s)));
        }
        shown = level;
        std::cout << ProgressLine(s, 0, s.seconds) << "\n";
        break;
      }
      case K::kOrbit:
        view.SetOrbit(step.args[0], step.args[1], step.args[2]);
        break;
      case K::kDrag:
        view.Orbit(step.args[0], step.args[1]);
        break;
      case K::kPan:
        view.Pan(step.args[0], step.args[1], args.height);
        break;
      case K::kZoom:
        view.Zoom(step.args[0]);
        break;
      case K::kFly:
        view.Fly(step.args[0], step.args[1], step.args[2], step.args[3]);
        break;
      case K::kReset:
        view.Reset();
        break;
      case K::kCompare:
        compare = step.on;
        break;
      case K::kFrame: {
        // The level waited for (or the newest), or the one before it with compare on.
        const fv::FeedState s = feed.state();
        const int at = (shown >= 0 ? shown : s.level) - (compare ? 1 : 0);
        const std::shared_ptr<const flexgs::GaussianCloud> cloud =
            at >= 0 && at < static_cast<int>(s.history.size()) ? s.history[at] : nullptr;
        if (!cloud) {
          return Fail(1, absl::FailedPreconditionError(
                             absl::StrFormat("script line %d: no %s level to show yet (add 'wait-level')", step.line,
                                             compare ? "previous" : "complete")));
        }
        auto frame = backend.Render(*cloud, view.CameraFor(args.width, args.height), render_options);
        if (!frame.ok()) return Fail(4, frame.status());
        const std::string path = (fs::path(args.out) / step.name).string();
        if (absl::Status st = flexgs::WritePng(path, frame->color); !st.ok()) return Fail(4, st);
        std::cout << "wrote " << path << "\n";
        break;
      }
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// The window.

// Input gathered by GLFW's callbacks, so that a press, a drag or a click shorter than
// a frame is never lost to polling (a busy CPU renders few frames a second). Each
// callback passes the event on to Dear ImGui first; the scene gets it only when the
// overlay does not want it.
struct Input {
  bool left = false, right = false;  // a drag that started on the scene
  double x = 0, y = 0;               // the last cursor position seen
  double orbit_dx = 0, orbit_dy = 0, pan_dx = 0, pan_dy = 0, wheel = 0;
  std::vector<int> pressed;  // keys pressed since the last frame, in order
};
Input* g_input = nullptr;

void OnMouseButton(GLFWwindow* window, int button, int action, int mods) {
  ImGui_ImplGlfw_MouseButtonCallback(window, button, action, mods);
  if (g_input == nullptr) return;
  const bool press = action == GLFW_PRESS && !ImGui::GetIO().WantCaptureMouse;
  if (press) glfwGetCursorPos(window, &g_input->x, &g_input->y);
  if (button == GLFW_MOUSE_BUTTON_LEFT) g_input->left = press;
  if (button == GLFW_MOUSE_BUTTON_RIGHT) g_input->right = press;
}

void OnCursorPos(GLFWwindow* /*window*/, double x, double y) {
  if (g_input == nullptr) return;
  const double dx = x - g_input->x, dy = y - g_input->y;
  g_input->x = x;
  g_input->y = y;
  if (g_input->left) {
    g_input->orbit_dx += dx;
    g_input->orbit_dy += dy;
  }
  if (g_input->right) {
    g_input->pan_dx += dx;
    g_input->pan_dy += dy;
  }
}

void OnScroll(GLFWwindow* window, double dx, double dy) {
  ImGui_ImplGlfw_ScrollCallback(window, dx, dy);
  if (g_input && !ImGui::GetIO().WantCaptureMouse) g_input->wheel += dy;
}

void OnKey(GLFWwindow* window, int key, int scancode, int action, int mods) {
  ImGui_ImplGlfw_KeyCallback(window, key, scancode, action, mods);
  if (g_input && action == GLFW_PRESS && !ImGui::GetIO().WantCaptureKeyboard) g_input->pressed.push_back(key);
}

class Window {
 public:
  static absl::StatusOr<std::unique_ptr<Window>> Open(int width, int height) {
    glfwSetErrorCallback([](int, const char* what) { LastError() = what; });
    if (!glfwInit()) {
      const char* display = std::getenv("DISPLAY");
      return absl::FailedPreconditionError(
          absl::StrFormat("cannot open a display (DISPLAY=%s): %s; use --headless --script FILE without one",
                          display ? display : "unset", LastError()));
    }
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 2);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 1);
    GLFWwindow* w = glfwCreateWindow(width, height, "flexgs-view", nullptr, nullptr);
    if (w == nullptr) {
      glfwTerminate();
      return absl::FailedPreconditionError(absl::StrCat("cannot create an OpenGL 2.1 window: ", LastError()));
    }
    glfwMakeContextCurrent(w);
    glfwSwapInterval(1);
    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGui::GetIO().IniFilename = nullptr;  // no imgui.ini in the working directory
    ImGui_ImplGlfw_InitForOpenGL(w, /*install_callbacks=*/false);
    ImGui_ImplOpenGL2_Init();
    glfwSetMouseButtonCallback(w, OnMouseButton);
    glfwSetCursorPosCallback(w, OnCursorPos);
    glfwSetScrollCallback(w, OnScroll);
    glfwSetKeyCallback(w, OnKey);
    glfwSetCharCallback(w, ImGui_ImplGlfw_CharCallback);
    glfwSetWindowFocusCallback(w, ImGui_ImplGlfw_WindowFocusCallback);
    glfwSetCursorEnterCallback(w, ImGui_ImplGlfw_CursorEnterCallback);
    return std::unique_ptr<Window>(new Window(w));
  }
  ~Window() {
    if (texture_ != 0) glDeleteTextures(1, &texture_);
    ImGui_ImplOpenGL2_Shutdown();
    ImGui_ImplGlfw_Shutdown();
    ImGui::DestroyContext();
    glfwDestroyWindow(window_);
    glfwTerminate();
  }
  GLFWwindow* get() const { return window_; }

  // Shows `image` stretched over the whole window (a reduced-resolution frame fills it too).
  void Upload(const flexgs::Image& image) {
    const std::vector<uint8_t> rgb = image.ToRgb8();
    if (texture_ == 0) glGenTextures(1, &texture_);
    glBindTexture(GL_TEXTURE_2D, texture_);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
    glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGB, image.width, image.height, 0, GL_RGB, GL_UNSIGNED_BYTE, rgb.data());
    has_image_ = true;
  }
  void DrawImage() {
    int fw = 0, fh = 0;
    glfwGetFramebufferSize(window_, &fw, &fh);
    glViewport(0, 0, fw, fh);
    glClearColor(0.05f, 0.05f, 0.08f, 1);
    glClear(GL_COLOR_BUFFER_BIT);
    if (!has_image_) return;
    glMatrixMode(GL_PROJECTION);
    glLoadIdentity();
    glMatrixMode(GL_MODELVIEW);
    glLoadIdentity();
    glEnable(GL_TEXTURE_2D);
    glBindTexture(GL_TEXTURE_2D, texture_);
    glBegin(GL_QUADS);  // image row 0 is the top of the window
    glTexCoord2f(0, 1);
    glVertex2f(-1, -1);
    glTexCoord2f(1, 1);
    glVertex2f(1, -1);
    glTexCoord2f(1, 0);
    glVertex2f(1, 1);
    glTexCoord2f(0, 0);
    glVertex2f(-1, 1);
    glEnd();
    glDisable(GL_TEXTURE_2D);
  }

 private:
  explicit Window(GLFWwindow* w) : window_(w) {}
  static std::string& LastError() {
    static std::string e = "unknown GLFW error";
    return e;
  }
  GLFWwindow* window_;
  GLuint texture_ = 0;
  bool has_image_ = false;
};

int RunWindow(const Args& args, fv::BudgetStreams& streams, fv::ViewController& view, flexgs::RasterBackend& backend,
              const flexgs::RenderOptions& render_options, uint64_t budget_bytes, const std::string& renderer_name) {
  auto window = Window::Open(args.width, args.height);
  if (!window.ok()) return Fail(1, window.status());
  float budget_percent = args.budget_ratio > 0 ? static_cast<float>(100 * args.budget_ratio) : 15.0f;
  bool budget_touched = false;
  GLFWwindow* w = (*window)->get();
  Input input;
  g_input = &input;
  glfwGetCursorPos(w, &input.x, &input.y);
  fv::FrameRenderer renderer(&backend, render_options);
  const auto t0 = Clock::now();
  auto last_tick = t0, last_move = t0 - std::chrono::seconds(1);
  uint64_t shown_version = 0, screenshots = 0;
  bool compare = false, dirty = true, full_res_shown = false, first_shown = false, screenshot = false;
  double scale = 1.0, last_render_ms = 0;
  flexgs::Image last_full;  // the newest full-resolution frame, for screenshots
  std::string note;
  int exit_code = 0;

  while (!glfwWindowShouldClose(w)) {
    glfwPollEvents();
    const auto now = Clock::now();
    const double dt = std::chrono::duration<double>(now - last_tick).count();
    last_tick = now;
    ImGuiIO& io = ImGui::GetIO();
    bool moved = false;

    // --- input -------------------------------------------------------------------------
    if (input.orbit_dx != 0 || input.orbit_dy != 0) {
      view.Orbit(input.orbit_dx, input.orbit_dy);
      input.orbit_dx = input.orbit_dy = 0;
      moved = true;
    }
    if (input.pan_dx != 0 || input.pan_dy != 0) {
      int ww = 0, wh = 0;
      glfwGetWindowSize(w, &ww, &wh);
      view.Pan(input.pan_dx, input.pan_dy, wh);
      input.pan_dx = input.pan_dy = 0;
      moved = true;
    }
    if (input.wheel != 0) {
      view.Zoom(input.wheel);
      input.wheel = 0;
      moved = true;
    }
    for (int key : input.pressed) {
      if (key == GLFW_KEY_ESCAPE) glfwSetWindowShouldClose(w, 1);
      if (key == GLFW_KEY_R) {
        view.Reset();
        moved = true;
      }
      if (key == GLFW_KEY_C) {
        compare = !compare;
        dirty = true;
      }
      if (key == GLFW_KEY_P) screenshot = true;
      if (key == GLFW_KEY_RIGHT_BRACKET || key == GLFW_KEY_LEFT_BRACKET) {
        budget_percent = fv::NextBudgetStep(budget_percent, key == GLFW_KEY_RIGHT_BRACKET);
        budget_touched = true;
        budget_bytes = 0;
        streams.Restart(budget_percent / 100.0);
      }
    }
    input.pressed.clear();
    if (!io.WantCaptureKeyboard) {  // flight while W/A/S/D/Q/E are held
      const auto key = [&](int k) { return glfwGetKey(w, k) == GLFW_PRESS ? 1.0 : 0.0; };
      const double f = key(GLFW_KEY_W) - key(GLFW_KEY_S), r = key(GLFW_KEY_D) - key(GLFW_KEY_A);
      const double u = key(GLFW_KEY_E) - key(GLFW_KEY_Q);
      if (f != 0 || r != 0 || u != 0) {
        view.Fly(f, r, u, std::min(dt, 0.1));
        moved = true;
      }
    }
    if (moved) {
      last_move = now;
      dirty = true;
    }

    // --- frames --------------------------------------------------------------------------
    const fv::FeedState s = streams.State();
    if (!budget_touched && s.levels > 0 && s.current) budget_percent = static_cast<float>(100 * s.ratio);
    if (s.version != shown_version) {
      shown_version = s.version;
      dirty = true;
    }
    if (auto frame = renderer.TakeFrame()) {
      last_render_ms = frame->render_ms;
      (*window)->Upload(frame->image);
      if (frame->image.width == args.width) {
        last_full = std::move(frame->image);
        full_res_shown = true;
      }
      if (!first_shown) {
        first_shown = true;
        spdlog::info("first level shown after {:.2f} s", std::chrono::duration<double>(now - t0).count());
      }
    }
    const bool still = now - last_move > std::chrono::milliseconds(250);
    const auto& cloud = compare && s.previous ? s.previous : s.current;
    if (cloud && !renderer.busy() && (dirty || (still && !full_res_shown))) {
      // Moving: a resolution whose render takes about 50 ms; still: the full window.
      if (still) {
        scale = 1.0;
      } else if (last_render_ms > 0) {
        scale = std::clamp(scale * std::sqrt(50.0 / last_render_ms), 0.2, 1.0);
      }
      const int rw = std::max(16, static_cast<int>(args.width * scale));
      const int rh = std::max(16, static_cast<int>(args.height * scale));
      renderer.Submit(cloud, view.CameraFor(rw, rh));
      full_res_shown = false;
      dirty = false;
    }
    if (!renderer.status().ok()) {
      exit_code = Fail(4, renderer.status());
      break;
    }
    // Only a full-resolution frame of the current view (none pending) is a screenshot.
    if (screenshot && full_res_shown && !dirty && !renderer.busy()) {
      screenshot = false;
      {
        const std::string path =
            (fs::path(args.out) / absl::StrFormat("screenshot-%03d.png", static_cast<int>(screenshots++))).string();
        const absl::Status st = flexgs::WritePng(path, last_full);
        note = st.ok() ? "wrote " + path : std::string(st.message());
        spdlog::info("{}", note);
      }
    }

    // --- overlay -------------------------------------------------------------------------
    ImGui_ImplOpenGL2_NewFrame();
    ImGui_ImplGlfw_NewFrame();
    ImGui::NewFrame();
    ImGui::SetNextWindowPos(ImVec2(10, 10), ImGuiCond_FirstUseEver);
    ImGui::Begin("flexgs-view", nullptr, ImGuiWindowFlags_AlwaysAutoResize);
    ImGui::Text("%s  %s", args.scene.c_str(), args.server.c_str());
    const double elapsed = s.done ? s.seconds : std::chrono::duration<double>(now - t0).count();
    if (s.level < 0) {
      ImGui::Text("waiting for the first level... %s received", fc::FormatBytes(s.bytes).c_str());
    } else {
      ImGui::Text("level %d of %d (%.1f%%)%s", s.level + 1, s.levels, 100 * s.ratio,
                  compare ? "  [showing the previous level]" : "");
      ImGui::Text("%zu Gaussians held", s.current ? s.current->size() : size_t{0});
    }
    ImGui::Text("%s received, %.1f Mbit/s", fc::FormatBytes(s.bytes).c_str(),
                elapsed > 0 ? 8.0 * static_cast<double>(s.bytes) / elapsed / 1e6 : 0.0);
    ImGui::Text("resident %s of %s", fc::FormatBytes(HeldBytes(s.current)).c_str(),
                budget_bytes ? fc::FormatBytes(budget_bytes).c_str() : "-");
    ImGui::Text("frame %.1f ms at %d%% resolution (%s)", last_render_ms, static_cast<int>(100 * scale),
                renderer_name.c_str());
    if (s.done) {
      ImGui::Text("%s", s.status.ok() ? "stream complete" : std::string(s.status.message()).c_str());
    }
    if (ImGui::Button("Reset view (R)")) {
      view.Reset();
      dirty = true;
    }
    ImGui::SameLine();
    if (ImGui::Button("Screenshot (P)")) screenshot = true;
    ImGui::SameLine();
    if (ImGui::Checkbox("Compare (C)", &compare)) dirty = true;
    // Budget as a top ratio; a new value streams again from the start (see Streams).
    ImGui::SliderFloat("budget", &budget_percent, 1.0f, 100.0f, "%.0f%% of the scene");
    if (ImGui::IsItemDeactivatedAfterEdit()) {
      budget_touched = true;
      budget_bytes = 0;
      streams.Restart(budget_percent / 100.0);
      note = absl::StrFormat("streaming again at %.0f%% (the protocol cannot extend a stream yet)", budget_percent);
    }
    if (streams.restarting()) ImGui::TextUnformatted("receiving the new budget...");
    if (!note.empty()) ImGui::TextUnformatted(note.c_str());
    ImGui::End();
    ImGui::Render();
    (*window)->DrawImage();
    ImGui_ImplOpenGL2_RenderDrawData(ImGui::GetDrawData());
    glfwSwapBuffers(w);
  }
  g_input = nullptr;
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flexgs-view: fly through a flexgs-stream scene while its levels arrive"};
  Args a;
  app.add_option("--server", a.server, "Server address HOST:PORT")->capture_default_str();
  app.add_option("--scene", a.scene, "Scene id")->required();
  auto* budget = app.add_option("--budget", a.budget, "Memory budget: a size (512MiB, 1.5GB) or auto[:fraction]")
                     ->capture_default_str();
  auto* ratio =
      app.add_option("--budget-ratio", a.budget_ratio, "Budget as a top ratio in (0, 1]")
          ->check(CLI::Validator(
              [](std::string& v) {
                double r = 0;
                return absl::SimpleAtod(v, &r) && r > 0 && r <= 1 ? std::string() : "must be a ratio in (0, 1]";
              },
              "in (0, 1]"));
  auto* gaussians = app.add_option("--budget-gaussians", a.budget_gaussians, "Budget as a Gaussian count")
                        ->check(CLI::PositiveNumber);
  ratio->excludes(budget)->excludes(gaussians);
  gaussians->excludes(budget);
  app.add_option("--width", a.width, "Window (and frame) width")->check(CLI::Range(16, 8192))->capture_default_str();
  app.add_option("--height", a.height, "Window (and frame) height")->check(CLI::Range(16, 8192))->capture_default_str();
  app.add_option("--fov", a.fov_x_deg, "Horizontal field of view (degrees)")
      ->check(CLI::Range(1.0, 179.0))
      ->capture_default_str();
  app.add_option("--background", a.background, "Background r,g,b")->capture_default_str();
  app.add_option("--device", a.device, "Renderer: auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--threads", a.threads, "CPU renderer threads (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--max-bandwidth", a.max_bandwidth, "Limit the read rate (e.g. 10Mbit, 2MB/s)");
  app.add_option("--out", a.out, "Folder for screenshots and script frames")->capture_default_str();
  auto* headless = app.add_flag("--headless", a.headless, "No window: run --script and write its frames");
  auto* script = app.add_option("--script", a.script, "Camera script (viewer/view_script.h)")->check(CLI::ExistingFile);
  headless->needs(script);
  script->needs(headless);
  app.add_option("--give-up-after", a.give_up_after_s, "Seconds without progress before giving up")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--level-timeout", a.level_timeout_s, "Script: seconds to wait for a level")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--tls-ca", a.tls_ca, "Use TLS, verifying the server with this CA bundle (PEM)");
  app.add_option("--tls-cert", a.tls_cert, "Client certificate for mutual TLS (PEM)");
  app.add_option("--tls-key", a.tls_key, "Client key for mutual TLS (PEM)");
  app.add_option("--token-file", a.token_file, "Send the bearer token in this file");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");

  auto background = flexgs::ParseRgbColor(a.background);
  if (!background.ok()) return Fail(1, background.status());
  auto device = flexgs::ParseDevice(a.device);
  if (!device.ok()) return Fail(1, device.status());
  std::error_code ec;
  fs::create_directories(a.out, ec);
  if (ec) return Fail(4, absl::InternalError(absl::StrCat("cannot create ", a.out, ": ", ec.message())));
  auto backend = flexgs::CreateRasterBackend(*device, a.threads);
  if (!backend.ok()) return Fail(1, backend.status());
  const std::string renderer_name((*backend)->name());

  fc::ConnectOptions connect;
  connect.address = a.server;
  connect.tls_ca_file = a.tls_ca;
  connect.tls_cert_file = a.tls_cert;
  connect.tls_key_file = a.tls_key;
  if (!a.token_file.empty()) {
    auto token = fc::ReadBearerToken(a.token_file);
    if (!token.ok()) return Fail(1, token.status());
    connect.bearer_token = *token;
  }
  fc::StreamOptions stream_options;
  stream_options.retry.give_up_after = std::chrono::milliseconds(static_cast<int64_t>(a.give_up_after_s * 1000));
  if (!a.max_bandwidth.empty()) {
    auto rate = fc::ParseBitRate(a.max_bandwidth);
    if (!rate.ok()) return Fail(1, rate.status());
    stream_options.max_bandwidth_bytes_per_s = *rate;
    connect.flow_control_window_bytes = 64 << 10;
  }
  auto client = fc::SceneClient::Connect(connect);
  if (!client.ok()) return Fail(1, client.status());
  auto info = (*client)->GetScene(a.scene, std::chrono::milliseconds(static_cast<int64_t>(a.give_up_after_s * 1000)));
  if (!info.ok()) return Fail(2, info.status());
  auto bounds = fc::FramingBounds(*info);
  if (!bounds.ok()) return Fail(2, bounds.status());
  auto request = BuildRequest(a, renderer_name == "cuda");
  if (!request.ok()) return Fail(1, request.status());
  const uint64_t budget_bytes = request->memory_bytes.value_or(0);

  fv::ViewController view(*bounds, a.fov_x_deg, a.width, a.height);
  flexgs::RenderOptions render_options;
  render_options.background = *background;
  if (a.headless) {
    fv::LevelFeed feed;
    feed.Start(client->get(), *request, stream_options, /*keep_history=*/true);
    return RunScript(a, feed, view, **backend, render_options);
  }
  fv::BudgetStreams streams(client->get(), *request, stream_options);
  return RunWindow(a, streams, view, **backend, render_options, budget_bytes, renderer_name);
}
