// flexgs-client: what a device runs. Declares its memory budget, receives the nested
// levels, renders each one as soon as it is complete, and reports what it took.
//
//   flexgs-client --server HOST:PORT --scene NAME --budget 64MiB --orbit 4 --out out/
//
// Writes level-<k>-view-<i>.png per level and view, cameras.json (the exact cameras
// used, so a local render can be compared), stats.json with --json, and optionally
// level-<k>.ply (--save-levels) and, with --save-ply FILE, the scene it holds at the end
// as a standard 3DGS PLY that other tools (SuperSplat, splat-transform) open. Exit codes: 0 done, 1 bad arguments, 2
// server or stream error (the gRPC-equivalent code is printed), 3 the resident bytes exceeded the declared budget, 4 a
// local error (render, file output).
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "base/file_io.h"
#include "base/sha256.h"
#include "client/budget_spec.h"
#include "client/channel_credentials.h"
#include "client/device_resident_store.h"
#include "client/progress_bar.h"
#include "client/renderer_memory.h"
#include "client/resident_store.h"
#include "client/scene_client.h"
#include "client/static_stream.h"
#include "io/camera_io.h"
#include "io/ply_io.h"
#include "io/png_io.h"
#include "kernels/backend.h"
#include "scene/orbit.h"
#include "spdlog/spdlog.h"
#include "stream/stream_budget.h"
#include "stream/stream_export.h"

namespace fc = flexgs::client;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string server = "127.0.0.1:50051", scene, budget, out;
  double budget_ratio = 0;
  uint64_t budget_gaussians = 0;
  int sh_degree = -1;
  std::string encoding = "quantized";
  int orbit = 0;
  std::string cameras;
  int width = 512, height = 512;
  double fov_x_deg = 50.0, elevation_deg = 20.0;
  std::string background = "0,0,0";
  std::string device = "auto";
  int threads = 0;
  std::string max_bandwidth;
  uint32_t max_chunk_bytes = 0;
  int render_every = 0;
  double give_up_after_s = 60;
  double keepalive_time_s = 30, keepalive_timeout_s = 20;
  bool json = false, save_levels = false, quiet = false, no_render = false;
  std::string tls_ca, tls_cert, tls_key, token_file;
  std::string save_ply;
  std::string from;  // an export directory (flexgs export-stream) instead of a server
  int64_t test_corrupt_sequence = -1;
  // Which budget flag was given (CLI11 lets at most one through).
  bool budget_given = false, budget_ratio_given = false, budget_gaussians_given = false;
};

int Fail(int code, const absl::Status& st) {
  std::cerr << "flexgs-client: error: " << st.message() << "\n";
  return code;
}

std::string CodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

// SHA-256 of the held Gaussians' float arrays, in order: two runs that end in the same
// state (e.g. interrupted and resumed vs. uninterrupted) print the same digest.
std::string StateDigest(const flexgs::GaussianCloud& c) {
  std::string bytes;
  auto add = [&bytes](const std::vector<float>& v) {
    bytes.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  };
  add(c.positions);
  add(c.log_scales);
  add(c.rotations);
  add(c.opacity_logits);
  add(c.sh_dc);
  add(c.sh_rest);
  return flexgs::Sha256Hex(bytes);
}

struct LevelRecord {
  fc::LevelStats stats;
  double render_s = 0;  // wall time of this level's renders
  uint64_t resident_bytes = 0;
  std::string state_sha256;
};

// Renders each completed level (and, optionally, partial states) while the stream runs.
class LevelRenderer : public fc::StreamObserver {
 public:
  LevelRenderer(const Args& args, flexgs::RasterBackend* backend, std::vector<flexgs::Camera> cameras,
                flexgs::RenderOptions options, Clock::time_point t0, fc::ProgressBar* bar)
      : args_(args), backend_(backend), cameras_(std::move(cameras)), options_(options), t0_(t0), bar_(bar) {}

  void OnHeader(const flexgs::v1::StreamHeader& header) override {
    levels_ = header.levels_size();
    records_.assign(levels_, LevelRecord{});
    framebuffer_bytes_ = 0;
  }
  void OnLevelStarted(int level, double ratio) override {
    level_ = level;
    ratio_ = ratio;
    blocks_in_level_ = 0;
  }
  void OnProgress(uint64_t bytes, uint64_t expected) override {
    bytes_ = bytes;
    bar_->Update({level_, levels_, ratio_, bytes, expected, Seconds()});
  }
  void OnLevelComplete(const fc::LevelStats& stats, const fc::ResidentStore& store) override {
    // Host stores are read in place; a device store is copied out only for the digest
    // and --save-levels (it renders from GPU memory).
    const auto* host_store = dynamic_cast<const fc::HostResidentStore*>(&store);
    flexgs::GaussianCloud copy;
    if (host_store == nullptr) copy = store.ToHost();
    const flexgs::GaussianCloud& cloud = host_store != nullptr ? host_store->cloud() : copy;
    LevelRecord& rec = records_[stats.index];
    rec.stats = stats;
    const auto t = Clock::now();
    if (!args_.no_render) {
      for (size_t v = 0; v < cameras_.size() && status_.ok(); ++v) {
        RenderTo(store, cloud, v, absl::StrFormat("level-%d-view-%d.png", stats.index, v));
      }
    }
    rec.render_s = std::chrono::duration<double>(Clock::now() - t).count();
    // With --no-render there is no frame: report the first level held instead.
    if (stats.index == 0 && first_frame_s_ < 0) first_frame_s_ = Seconds();
    rec.state_sha256 = StateDigest(cloud);
    rec.resident_bytes = store.AllocatedBytes() + ScratchBytes(store) + framebuffer_bytes_;
    peak_resident_ = std::max(peak_resident_, rec.resident_bytes);
    if (args_.save_levels && status_.ok()) {
      auto st = flexgs::WriteGaussianPly((fs::path(args_.out) / absl::StrFormat("level-%d.ply", stats.index)).string(),
                                         cloud);
      if (!st.ok()) status_ = st;
    }
    if (!args_.quiet) {
      bar_->Clear();
      std::cout << absl::StrFormat("level %d  %5.1f%%  %9d Gaussians  %10s  received at %6.2f s  rendered in %.2f s\n",
                                   stats.index, stats.ratio * 100, stats.gaussians,
                                   fc::FormatBytes(stats.payload_bytes), stats.completed_s, rec.render_s)
                << std::flush;
    }
  }
  // Partial renders every K blocks (--render-every): how the picture fills in.
  void OnBlockApplied(int /*level*/, const fc::ResidentStore& store) override {
    if (args_.render_every <= 0 || args_.no_render || cameras_.empty()) return;
    if (++blocks_in_level_ % args_.render_every != 0) return;
    const auto* host_store = dynamic_cast<const fc::HostResidentStore*>(&store);
    static const flexgs::GaussianCloud kNone;
    RenderTo(store, host_store != nullptr ? host_store->cloud() : kNone, 0,
             absl::StrFormat("partial-%d-block-%d-view-0.png", level_, blocks_in_level_));
  }
  void OnRetry(const absl::Status& why, int attempt, std::chrono::milliseconds backoff) override {
    bar_->Clear();
    std::cerr << "flexgs-client: stream interrupted (" << why.message() << "); retry " << attempt << " in "
              << backoff.count() << " ms\n";
  }

  uint64_t ScratchBytesOf(const fc::ResidentStore& store) const { return ScratchBytes(store); }
  double Seconds() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  const std::vector<LevelRecord>& records() const { return records_; }
  double first_frame_s() const { return first_frame_s_; }
  uint64_t peak_resident() const { return peak_resident_; }
  uint64_t framebuffer_bytes() const { return framebuffer_bytes_; }
  const absl::Status& status() const { return status_; }

 private:
  // Working memory of whichever renderer draws `store`.
  uint64_t ScratchBytes(const fc::ResidentStore& store) const {
    if (const auto* dev = dynamic_cast<const fc::DeviceResidentStore*>(&store)) return dev->RenderScratchBytes();
    return backend_->ScratchBytes();
  }

  void RenderTo(const fc::ResidentStore& store, const flexgs::GaussianCloud& host_cloud, size_t view,
                const std::string& name) {
    // A device-resident store renders from GPU memory; a host one through the backend.
    auto* dev = dynamic_cast<fc::DeviceResidentStore*>(const_cast<fc::ResidentStore*>(&store));
    auto r =
        dev != nullptr ? dev->Render(cameras_[view], options_) : backend_->Render(host_cloud, cameras_[view], options_);
    if (!r.ok()) {
      status_ = r.status();
      return;
    }
    framebuffer_bytes_ = std::max<uint64_t>(framebuffer_bytes_, r->color.pixels.capacity() * sizeof(float) +
                                                                    r->final_transmittance.capacity() * sizeof(float) +
                                                                    r->contributors.capacity() * sizeof(uint32_t));
    auto st = flexgs::WritePng((fs::path(args_.out) / name).string(), r->color);
    if (!st.ok()) status_ = st;
  }

  const Args& args_;
  flexgs::RasterBackend* backend_;
  std::vector<flexgs::Camera> cameras_;
  flexgs::RenderOptions options_;
  Clock::time_point t0_;
  fc::ProgressBar* bar_;
  std::vector<LevelRecord> records_;
  int levels_ = 0, level_ = 0, blocks_in_level_ = 0;
  double ratio_ = 0;
  uint64_t bytes_ = 0, peak_resident_ = 0, framebuffer_bytes_ = 0;
  double first_frame_s_ = -1;
  absl::Status status_;
};

// Bytes for one framebuffer as the rasterizer returns it: RGB float image, final
// transmittance and contributor count per pixel.
uint64_t FramebufferBytes(int width, int height) {
  return static_cast<uint64_t>(width) * height * (3 * sizeof(float) + sizeof(float) + sizeof(uint32_t));
}

// The flags, checked and parsed as far as the command line alone allows.
struct Options {
  fc::BudgetSpec budget;
  double rate = 0;  // --max-bandwidth in bytes per second; 0: unlimited
  flexgs::v1::Encoding encoding = flexgs::v1::ENCODING_QUANTIZED;
  std::array<float, 3> background{};
  flexgs::Device device = flexgs::Device::kAuto;
  std::vector<flexgs::Camera> file_cameras;   // --cameras
  std::optional<flexgs::OrbitOptions> orbit;  // --orbit, framed once the scene's bounds are known
};

// What CLI11 cannot check itself (the budget, the rate, the colour, the camera file, the
// orbit), before any connection is made, so that a typo costs no round trip.
absl::StatusOr<Options> ValidateOptions(const Args& args) {
  Options o;
  if (!args.budget_given && !args.budget_ratio_given && !args.budget_gaussians_given) {
    return absl::InvalidArgumentError(
        "give exactly one of --budget SIZE|auto, --budget-ratio R, "
        "--budget-gaussians N");
  }
  if (args.budget_given) {
    auto s = fc::ParseBudgetSpec(args.budget);
    if (!s.ok()) return s.status();
    o.budget = *s;
  } else if (args.budget_ratio_given) {
    if (!(args.budget_ratio > 0 && args.budget_ratio <= 1.0)) {
      return absl::InvalidArgumentError("--budget-ratio must be in (0, 1]");
    }
    o.budget.kind = fc::BudgetSpec::Kind::kRatio;
    o.budget.ratio = args.budget_ratio;
  } else {
    o.budget.kind = fc::BudgetSpec::Kind::kGaussians;
    o.budget.gaussians = args.budget_gaussians;
  }
  if (!args.max_bandwidth.empty()) {
    auto r = fc::ParseBitRate(args.max_bandwidth);
    if (!r.ok()) return r.status();
    o.rate = *r;
  }
  o.encoding = args.encoding == "lossless" ? flexgs::v1::ENCODING_LOSSLESS : flexgs::v1::ENCODING_QUANTIZED;
  auto background = flexgs::ParseRgbColor(args.background);
  if (!background.ok()) return background.status();
  o.background = *background;
  auto device = flexgs::ParseDevice(args.device);
  if (!device.ok()) return device.status();
  o.device = *device;
  if (!args.cameras.empty()) {
    auto cams = flexgs::LoadCameras(args.cameras);
    if (!cams.ok()) return cams.status();
    o.file_cameras = *std::move(cams);
  }
  if (o.file_cameras.empty() && args.orbit > 0) {
    flexgs::OrbitOptions orbit;
    orbit.count = args.orbit;
    orbit.width = args.width;
    orbit.height = args.height;
    orbit.fov_x_deg = args.fov_x_deg;
    orbit.elevation_deg = args.elevation_deg;
    if (absl::Status st = flexgs::ValidateOrbitOptions(orbit); !st.ok()) return st;
    o.orbit = orbit;
  }
  return o;
}

// The output directory, made before connecting so that results have somewhere to go.
absl::Status CreateOutputDir(const std::string& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create --out '", out, "': ", ec.message()));
  return absl::OkStatus();
}

// The channel as the flags configure it (TLS, token, keepalive). With a rate limit, a
// small fixed window (~100 ms of data, at least 64 KiB) makes the limit the sender's
// rate instead of filling megabytes of receive buffers first.
absl::StatusOr<std::unique_ptr<fc::SceneClient>> ConnectToServer(const Args& args, double rate) {
  fc::ConnectOptions connect;
  connect.address = args.server;
  connect.tls_ca_file = args.tls_ca;
  connect.tls_cert_file = args.tls_cert;
  connect.tls_key_file = args.tls_key;
  connect.keepalive_time = std::chrono::milliseconds(static_cast<int64_t>(args.keepalive_time_s * 1000));
  connect.keepalive_timeout = std::chrono::milliseconds(static_cast<int64_t>(args.keepalive_timeout_s * 1000));
  if (!args.token_file.empty()) {
    auto token = fc::ReadBearerToken(args.token_file);
    if (!token.ok()) return token.status();
    connect.bearer_token = *std::move(token);
  }
  if (rate > 0) connect.flow_control_window_bytes = static_cast<uint32_t>(std::clamp(rate * 0.1, 65536.0, 4194304.0));
  return fc::SceneClient::Connect(connect);
}

// The scene's facts: cameras are framed on its bounds, the budget is sized with its
// advertised per-Gaussian cost. Retried briefly so that a client started together with
// its server does not fail on the first connection refusal.
absl::StatusOr<flexgs::v1::SceneInfo> FetchSceneInfo(fc::SceneClient& client, const Args& args, Clock::time_point t0) {
  absl::StatusOr<flexgs::v1::SceneInfo> info;
  for (int attempt = 0;; ++attempt) {
    info = client.GetScene(args.scene, std::chrono::seconds(10));
    if (info.ok() || info.status().code() != absl::StatusCode::kUnavailable ||
        std::chrono::duration<double>(Clock::now() - t0).count() > args.give_up_after_s) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(2000, 100 << std::min(attempt, 4))));
  }
  return info;
}

// The views to render: the --cameras as read, or the --orbit framed on the scene's view
// bounds (its bounds when it has none); none with neither flag.
absl::StatusOr<std::vector<flexgs::Camera>> ChooseCameras(const Options& options, const flexgs::v1::SceneInfo& info) {
  if (!options.file_cameras.empty()) return options.file_cameras;
  if (!options.orbit) return std::vector<flexgs::Camera>();
  auto bounds = fc::FramingBounds(info);
  if (!bounds.ok()) return bounds.status();
  return flexgs::OrbitCameras(*bounds, *options.orbit);
}

// Writes cameras.json and replaces `cameras` by what it holds, so that renders use the
// cameras as written and `flexgs render --cameras cameras.json` reproduces them exactly.
absl::Status WriteCameras(const std::string& out, std::vector<flexgs::Camera>* cameras) {
  if (cameras->empty()) return absl::OkStatus();
  const std::string path = (fs::path(out) / "cameras.json").string();
  if (absl::Status st = flexgs::WriteInriaCamerasJson(path, *cameras); !st.ok()) return st;
  auto reread = flexgs::LoadCameras(path);
  if (!reread.ok()) return reread.status();
  *cameras = *std::move(reread);
  return absl::OkStatus();
}

// What the client needs whatever the level: one framebuffer per view size.
uint64_t FramebufferReserve(const std::vector<flexgs::Camera>& cameras) {
  uint64_t reserve = 0;
  for (const auto& c : cameras) reserve = std::max(reserve, FramebufferBytes(c.width, c.height));
  return reserve;
}

// The request: a byte budget is declared to the server less `framebuffer_reserve`, since
// the server sizes levels for the Gaussians alone.
absl::StatusOr<fc::StreamRequest> BuildRequest(const Args& args, const Options& options, const fc::ByteBudget& budget,
                                               uint64_t framebuffer_reserve) {
  fc::StreamRequest request;
  request.scene_id = args.scene;
  request.encoding = options.encoding;
  request.max_chunk_bytes = args.max_chunk_bytes;
  if (args.sh_degree >= 0) request.max_sh_degree = static_cast<uint32_t>(args.sh_degree);
  const fc::BudgetSpec& spec = options.budget;
  if (spec.kind == fc::BudgetSpec::Kind::kBytes || spec.kind == fc::BudgetSpec::Kind::kAuto) {
    if (budget.bytes <= framebuffer_reserve) {
      return absl::InvalidArgumentError(absl::StrCat("budget ", fc::FormatBytes(budget.bytes),
                                                     " does not even hold the ", fc::FormatBytes(framebuffer_reserve),
                                                     " framebuffer of the requested views"));
    }
    request.memory_bytes = budget.bytes - framebuffer_reserve;
  } else if (spec.kind == fc::BudgetSpec::Kind::kRatio) {
    request.ratio = spec.ratio;
  } else {
    request.gaussians = spec.gaussians;
  }
  return request;
}

// Where the Gaussians live: in GPU memory when the CUDA renderer draws them (no copy per
// frame), else in host memory.
std::unique_ptr<fc::ResidentStore> MakeResidentStore(bool on_gpu, bool no_render) {
  if (on_gpu && !no_render) {
    auto dev = fc::DeviceResidentStore::Create();
    if (dev.ok()) return *std::move(dev);
    spdlog::warn("device-resident store unavailable ({}); holding Gaussians in host memory",
                 std::string(dev.status().message()));
  }
  return std::make_unique<fc::HostResidentStore>();
}

// How the stream is read: the rate limit, when to give up, and the test hook that flips
// one payload bit once (the CRC no longer matches, so the message must be resumed from).
fc::StreamOptions MakeStreamOptions(const Args& args, double rate) {
  fc::StreamOptions options;
  options.max_bandwidth_bytes_per_s = rate;
  options.retry.give_up_after = std::chrono::milliseconds(static_cast<int64_t>(args.give_up_after_s * 1000));
  if (args.test_corrupt_sequence >= 0) {
    auto corrupted = std::make_shared<bool>(false);  // shared by every copy of the hook
    options.chunk_hook =
        [corrupted, sequence = static_cast<uint64_t>(args.test_corrupt_sequence)](flexgs::v1::StreamChunk& chunk) {
          if (!*corrupted && chunk.sequence() == sequence && !chunk.payload().empty()) {
            std::string* p = chunk.mutable_payload();
            (*p)[p->size() / 2] ^= 0x10;
            *corrupted = true;
          }
        };
  }
  return options;
}

// What was set up before streaming, for stats.json and the summary line.
struct Setup {
  Options options;
  fc::ByteBudget budget;
  fc::StreamRequest request;
  uint64_t framebuffer_reserve = 0;
  std::string renderer;  // the raster backend's name
};

// stats.json: what was asked, received, held and rendered, per level and in all.
nlohmann::json StatsJson(const Args& args, const Setup& setup, const LevelRenderer& renderer,
                         const fc::StreamSummary& summary, const fc::ResidentStore& store, double total_s) {
  const uint64_t peak = renderer.peak_resident();
  const auto& header = summary.header;
  nlohmann::json j;
  j["scene"] = args.scene;
  j["server"] = args.server;
  j["model_digest"] = header.model_digest();
  j["model_gaussians"] = header.model_gaussians();
  j["encoding"] = args.encoding;
  j["sh_degree"] = header.sh_degree();
  j["renderer"] = setup.renderer;
  j["budget"] = {
      {"spec", args.budget.empty() ? (args.budget_ratio > 0 ? absl::StrCat("ratio ", args.budget_ratio)
                                                            : absl::StrCat(args.budget_gaussians, " Gaussians"))
                                   : args.budget},
      {"bytes", setup.budget.bytes},
      {"source", setup.budget.source},
      {"declared_memory_bytes", setup.request.memory_bytes.value_or(0)},
      {"framebuffer_reserve_bytes", setup.framebuffer_reserve}};
  nlohmann::json levels = nlohmann::json::array();
  for (const auto& rec : renderer.records()) {
    levels.push_back({{"index", rec.stats.index},
                      {"ratio", rec.stats.ratio},
                      {"gaussians", rec.stats.gaussians},
                      {"bytes", rec.stats.payload_bytes},
                      {"started_s", rec.stats.started_s},
                      {"completed_s", rec.stats.completed_s},
                      {"receive_s", rec.stats.completed_s - rec.stats.started_s},
                      {"render_s", rec.render_s},
                      {"resident_bytes", rec.resident_bytes},
                      {"state_sha256", rec.state_sha256}});
  }
  j["levels"] = levels;
  j["time_to_first_frame_s"] = renderer.first_frame_s();
  j["total_s"] = total_s;
  j["payload_bytes"] = summary.payload_bytes;
  j["messages"] = summary.messages;
  j["resident_bytes"] = {{"store", store.AllocatedBytes()},
                         {"render_scratch", renderer.ScratchBytesOf(store)},
                         {"framebuffer", renderer.framebuffer_bytes()},
                         {"peak_total", peak},
                         {"location", store.location()}};
  j["within_budget"] = setup.budget.bytes == 0 || peak <= setup.budget.bytes;
  j["retries"] = summary.retries;
  j["rejected_messages"] = summary.rejected_messages;
  j["max_bandwidth_bytes_per_s"] = setup.options.rate;
  j["final_state_sha256"] = renderer.records().empty() ? "" : renderer.records().back().state_sha256;
  return j;
}

// The closing line on stdout: levels, bytes, time, first frame, and what was held.
std::string SummaryLine(const Setup& setup, const LevelRenderer& renderer, const fc::StreamSummary& summary,
                        const fc::ResidentStore& store, double total_s) {
  const uint64_t budget_bytes = setup.budget.bytes;
  return absl::StrFormat(
      "done: %d levels, %d Gaussians, %s in %.2f s (%d messages, %d retries); first frame after %.2f s; "
      "resident %s%s\n",
      summary.header.levels_size(), store.size(), fc::FormatBytes(summary.payload_bytes), total_s, summary.messages,
      summary.retries, renderer.first_frame_s(), fc::FormatBytes(renderer.peak_resident()),
      budget_bytes > 0 ? absl::StrCat(" of ", fc::FormatBytes(budget_bytes), " budget") : "");
}

int Run(const Args& args) {
  Setup setup;
  auto options = ValidateOptions(args);
  if (!options.ok()) return Fail(1, options.status());
  setup.options = *std::move(options);
  if (absl::Status st = CreateOutputDir(args.out); !st.ok()) return Fail(4, st);
  auto backend = flexgs::CreateRasterBackend(setup.options.device, args.threads);
  if (!backend.ok()) return Fail(1, backend.status());
  setup.renderer = std::string((*backend)->name());
  const bool on_gpu = setup.renderer == "cuda";
  auto probe = fc::ProbeForBudget(setup.options.budget, on_gpu);
  if (!probe.ok()) return Fail(4, probe.status());
  auto budget = fc::ResolveByteBudget(setup.options.budget, *probe);
  if (!budget.ok()) return Fail(1, budget.status());
  setup.budget = *std::move(budget);

  const auto t0 = Clock::now();
  // From an export: no server, the same checks (client/static_stream.h).
  std::optional<flexgs::StreamExport> exported;
  absl::StatusOr<std::unique_ptr<fc::SceneClient>> client = std::unique_ptr<fc::SceneClient>();
  absl::StatusOr<flexgs::v1::SceneInfo> info;
  if (!args.from.empty()) {
    auto e = flexgs::ReadStreamExport(args.from);
    if (!e.ok()) return Fail(2, e.status());
    exported = *std::move(e);
    info = fc::SceneInfoOf(*exported);
  } else {
    if (args.scene.empty()) return Fail(1, absl::InvalidArgumentError("--scene is required with --server"));
    client = ConnectToServer(args, setup.options.rate);
    if (!client.ok()) return Fail(1, client.status());
    info = FetchSceneInfo(**client, args, t0);
  }
  if (!info.ok()) {
    std::cerr << "flexgs-client: " << CodeName(info.status().code()) << "\n";
    if (info.status().code() == absl::StatusCode::kUnavailable) {
      return Fail(2, absl::UnavailableError(absl::StrFormat("gave up after %.1f s: %s",
                                                            std::chrono::duration<double>(Clock::now() - t0).count(),
                                                            info.status().message())));
    }
    return Fail(2, info.status());
  }
  auto cameras = ChooseCameras(setup.options, *info);
  if (!cameras.ok()) return Fail(2, cameras.status());
  if (absl::Status st = WriteCameras(args.out, &*cameras); !st.ok()) return Fail(4, st);
  setup.framebuffer_reserve = FramebufferReserve(*cameras);
  auto request = BuildRequest(args, setup.options, setup.budget, setup.framebuffer_reserve);
  if (!request.ok()) return Fail(1, request.status());
  setup.request = *std::move(request);

  std::unique_ptr<fc::ResidentStore> store = MakeResidentStore(on_gpu, args.no_render);
  flexgs::RenderOptions render_options;
  render_options.background = setup.options.background;
  fc::ProgressBar bar(stderr, !args.quiet && fc::ProgressBar::IsTerminal(stderr));
  LevelRenderer renderer(args, backend->get(), *std::move(cameras), render_options, t0, &bar);
  auto summary =
      exported ? fc::StreamFromExport(args.from, *exported, setup.request, store.get(), &renderer)
               : (*client)->Stream(setup.request, MakeStreamOptions(args, setup.options.rate), store.get(), &renderer);
  bar.Finish();
  if (!summary.ok()) {
    std::cerr << "flexgs-client: " << CodeName(summary.status().code()) << "\n";
    return Fail(2, summary.status());
  }
  if (!renderer.status().ok()) return Fail(4, renderer.status());
  if (!args.save_ply.empty()) {
    if (absl::Status st = flexgs::WriteGaussianPly(args.save_ply, store->ToHost()); !st.ok()) return Fail(4, st);
  }

  const double total_s = renderer.Seconds();
  if (args.json) {
    const nlohmann::json stats = StatsJson(args, setup, renderer, *summary, *store, total_s);
    auto st = flexgs::WriteFileAtomically((fs::path(args.out) / "stats.json").string(), stats.dump(2) + "\n");
    if (!st.ok()) return Fail(4, st);
  }
  if (!args.quiet) std::cout << SummaryLine(setup, renderer, *summary, *store, total_s);
  const uint64_t peak = renderer.peak_resident();
  if (setup.budget.bytes > 0 && peak > setup.budget.bytes) {
    return Fail(3, absl::ResourceExhaustedError(
                       absl::StrCat("resident bytes ", peak, " exceeded the budget ", setup.budget.bytes)));
  }
  return 0;
}

// The command line: every flag, with the checks CLI11 makes itself (ranges, allowed
// values, exclusions); `a` receives the values.
void DeclareFlags(CLI::App& app, Args& a) {
  app.add_option("--server", a.server, "Server address HOST:PORT")->capture_default_str();
  app.add_option("--scene", a.scene, "Scene id (required with --server)");
  app.add_option("--from", a.from,
                 "Read the stream from the files `flexgs export-stream` wrote in this directory (or a copy an HTTP "
                 "cache served) instead of a server");
  auto* budget = app.add_option("--budget", a.budget, "Memory budget: a size (512MiB, 1.5GB) or auto[:fraction]");
  auto* ratio = app.add_option("--budget-ratio", a.budget_ratio, "Budget as a top ratio in (0, 1]");
  auto* gaussians = app.add_option("--budget-gaussians", a.budget_gaussians, "Budget as a Gaussian count")
                        ->check(CLI::Range(uint64_t{1}, std::numeric_limits<uint64_t>::max()));
  budget->excludes(ratio)->excludes(gaussians);
  ratio->excludes(gaussians);
  budget->each([&a](const std::string&) { a.budget_given = true; });
  ratio->each([&a](const std::string&) { a.budget_ratio_given = true; });
  gaussians->each([&a](const std::string&) { a.budget_gaussians_given = true; });
  app.add_option("--sh-degree", a.sh_degree, "Highest SH degree wanted (default: the model's)");
  app.add_option("--encoding", a.encoding, "quantized or lossless")
      ->capture_default_str()
      ->check(CLI::IsMember({"quantized", "lossless"}));
  auto* orbit = app.add_option("--orbit", a.orbit, "Render N orbit views framed on the scene bounds");
  auto* cameras = app.add_option("--cameras", a.cameras, "Render these cameras (cameras.json or COLMAP model)");
  orbit->excludes(cameras);
  app.add_option("--width", a.width, "Orbit view width")->capture_default_str();
  app.add_option("--height", a.height, "Orbit view height")->capture_default_str();
  app.add_option("--fov", a.fov_x_deg, "Orbit horizontal field of view (degrees)")->capture_default_str();
  app.add_option("--background", a.background, "Background r,g,b")->capture_default_str();
  app.add_option("--device", a.device, "Renderer: auto, cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--threads", a.threads, "CPU renderer threads (0: all)");
  app.add_option("--out", a.out, "Output directory")->required();
  app.add_option("--max-bandwidth", a.max_bandwidth, "Limit the read rate (e.g. 10Mbit, 2MB/s)");
  app.add_option("--max-chunk-bytes", a.max_chunk_bytes, "Largest message wanted (0: server default)");
  app.add_option("--render-every", a.render_every, "Also render view 0 every K Gaussian blocks");
  app.add_option("--give-up-after", a.give_up_after_s, "Seconds without progress before giving up")
      ->capture_default_str();
  app.add_option("--keepalive-time", a.keepalive_time_s,
                 "Seconds between keepalive pings while streaming (a dead link is noticed, then resumed)")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  app.add_option("--keepalive-timeout", a.keepalive_timeout_s, "Seconds a keepalive ping may go unanswered")
      ->check(CLI::Range(0.5, 3600.0))
      ->capture_default_str();
  app.add_option("--tls-ca", a.tls_ca, "Use TLS, verifying the server with this CA bundle (PEM)");
  app.add_option("--tls-cert", a.tls_cert, "Client certificate for mutual TLS (PEM)");
  app.add_option("--tls-key", a.tls_key, "Client key for mutual TLS (PEM)");
  app.add_option("--token-file", a.token_file, "Send the bearer token in this file");
  app.add_flag("--json", a.json, "Write stats.json to --out");
  app.add_flag("--save-levels", a.save_levels, "Write level-<k>.ply for each level");
  app.add_option("--save-ply", a.save_ply, "Write the scene held at the end as a standard 3DGS PLY to this file");
  app.add_flag("--no-render", a.no_render, "Receive and verify only");
  app.add_flag("--quiet", a.quiet, "No progress bar or summary");
  app.add_option("--test-corrupt-sequence", a.test_corrupt_sequence,
                 "Test hook: flip a bit in the payload of this sequence once")
      ->group("");  // hidden
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);  // as flexgs-server: a debug aid, ~4 % CPU
  Args a;
  CLI::App app{"flexgs-client: receive an elastic scene level by level and render each level"};
  DeclareFlags(app, a);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints what it refused (or --help); every bad argument exits 1, as documented.
    return app.exit(e) == 0 ? 0 : 1;
  }
  spdlog::set_level(spdlog::level::warn);
  return Run(a);
}
