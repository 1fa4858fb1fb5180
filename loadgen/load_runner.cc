// Why the CompletionQueue API and not the callback API (ClientReadReactor):
//
// With --verify every message is decoded (zstd, dequantisation, applied to a resident
// store): real CPU work, per message, for every stream. The callback API runs reactions
// on gRPC's own, library-sized thread pool and asks that they be fast and never block;
// decoding there would compete with the transport for those threads and skew the very
// latencies being measured, and the client's decode capacity would be whatever gRPC
// chose. With CompletionQueues the load generator owns its threads: `threads` workers,
// each draining its own queue, and each stream lives on one worker for its whole life,
// so a stream's state is only ever touched by one thread (no locks per message) and the
// client's CPU budget is explicit -- the report prints the CPU it used, so a saturated
// client is visible instead of being mistaken for a slow server. Timers (the slow
// readers' token-bucket pauses, the back-off after a refused call) are grpc::Alarms on
// the same queue, so they follow the same one-thread-per-stream rule.
//
// Each stream has exactly one operation outstanding at any time (StartCall, then Read
// after Read, an Alarm between two Reads, then Finish), which keeps the state machine
// small and makes "delete after Finish" trivially safe.
#include "loadgen/load_runner.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/crc32c.h"
#include "client/channel_credentials.h"
#include "client/resident_store.h"
#include "client/scene_assembler.h"
#include "client/token_bucket.h"
#include "flexgs/v1/scene_service.grpc.pb.h"

namespace flexgs::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// Error messages go into the report; a server could send a very long one.
std::string Clip(std::string s) {
  constexpr size_t kMax = 300;
  if (s.size() > kMax) s = s.substr(0, kMax) + "...";
  return s;
}

// A call refused before any message (nothing listening, server at its stream limit) is
// answered in microseconds. Without a pause a --duration run against a dead target
// would spin and record millions of failures. 10 ms per slot is far below any stream's
// length, so a server that refuses at its limit still sees every slot come straight
// back, as a client retrying at once would.
constexpr auto kRefusedBackoff = std::chrono::milliseconds(10);

struct Endpoint {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::SceneService::Stub> stub;
};

class Runner;
struct Worker;

// One StreamScene call, from StartCall to Finish, on one worker's queue.
class Stream {
 public:
  enum class Op { kStart, kRead, kAlarm, kFinish };
  struct Tag {
    Stream* stream;
    Op op;
  };

  Stream(Runner* runner, Worker* worker, int slot, uint64_t index, bool delay_start);

  // Starts the call, or first waits kRefusedBackoff when delay_start.
  void Begin();
  // One completion from the queue. Returns true when the stream is over: its outcome is
  // recorded and it may be deleted.
  bool Handle(Op op, bool ok);
  // From the signal-handling thread, under the runner's registry lock.
  void Interrupt() {
    interrupted_.store(true);
    ctx_.TryCancel();
  }

  int slot() const { return slot_; }
  // Refused before any message: the slot backs off before its next stream.
  bool refused() const { return messages_ == 0 && !status_.ok(); }

 private:
  void StartCall();
  void Read() { reader_->Read(&chunk_, &read_tag_); }
  void Finish() { reader_->Finish(&status_, &finish_tag_); }
  // The stuck pause in short alarms, so that SIGINT (Interrupt) ends it promptly:
  // Interrupt runs on another thread and must not touch alarm_.
  void SleepStuck();
  // Checks and applies chunk_; on a failure cancels the call and remembers why.
  void Take(double t);
  void TakeLight(double t);  // --no-verify: sequence, CRC-32C, header/trailer counts
  void Reject(std::string why);
  void Record();

  Runner* runner_;
  Worker* worker_;
  const int slot_;
  const uint64_t index_;
  const bool delay_start_;
  bool slow_ = false;
  bool cancel_planned_ = false;
  bool stuck_ = false;         // stops reading after the header for --stuck-seconds...
  bool stuck_paused_ = false;  // ...which it has done (then it drains the call)
  Clock::time_point stuck_until_;
  std::mt19937_64 rng_;

  Tag start_tag_{this, Op::kStart}, read_tag_{this, Op::kRead}, alarm_tag_{this, Op::kAlarm},
      finish_tag_{this, Op::kFinish};
  // The context outlives the reader (members are destroyed in reverse order).
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientAsyncReaderInterface<v1::StreamChunk>> reader_;
  std::unique_ptr<grpc::Alarm> alarm_;
  v1::StreamChunk chunk_;
  grpc::Status status_;
  bool started_ = false;
  Clock::time_point t0_;

  std::optional<client::TokenBucket> bucket_;
  Clock::duration pause_{};  // what the bucket asked for on the last message

  client::HostResidentStore store_;
  client::SceneAssembler assembler_{&store_};
  uint64_t next_sequence_ = 0, total_messages_ = 0;  // --no-verify bookkeeping
  bool header_seen_ = false, trailer_seen_ = false;

  uint64_t messages_ = 0, payload_bytes_ = 0;
  uint64_t cancel_after_ = 0;  // cancel after this many messages; 0: not (yet) chosen
  bool draining_ = false;      // cancelled or rejected: read until the call ends, ignore what comes
  bool cancelled_ = false;     // deliberately (--cancel-fraction)
  std::atomic<bool> interrupted_{false};
  std::string verify_error_;
  double first_chunk_s_ = -1;
  std::vector<double> level_end_s_;
};

struct Worker {
  grpc::CompletionQueue cq;
  std::vector<int> slots;
  int live_slots = 0;
  RunStats stats;
  Clock::time_point finished_at;
  std::thread thread;
};

class Runner {
 public:
  Runner(const LoadConfig& config, std::vector<Budget> budgets)
      : config_(config), budgets_(std::move(budgets)), cycle_(WeightedCycle(budgets_)) {}

  absl::StatusOr<RunStats> Run(RunInfo* info);

  const LoadConfig& config() const { return config_; }

  // What stream `index` asks for: scene k % S, and the budget cycle advanced once per
  // pass over the scenes, so every (scene, budget) pair occurs.
  v1::StreamSceneRequest RequestFor(uint64_t index) const {
    v1::StreamSceneRequest r;
    const uint64_t s = config_.scenes.size();
    r.set_scene_id(config_.scenes[index % s]);
    const Budget& b = budgets_[cycle_[(index / s) % cycle_.size()]];
    switch (b.kind) {
      case Budget::Kind::kRatio:
        r.set_ratio(b.ratio);
        break;
      case Budget::Kind::kBytes:
        r.set_memory_bytes(b.bytes);
        break;
      case Budget::Kind::kGaussians:
        r.set_gaussians(b.gaussians);
        break;
    }
    r.set_encoding(config_.lossless ? v1::ENCODING_LOSSLESS : v1::ENCODING_QUANTIZED);
    r.set_max_chunk_bytes(config_.max_chunk_bytes);
    return r;
  }

  v1::SceneService::Stub* StubFor(int slot, bool slow, bool stuck) const {
    const auto& pool = stuck ? stuck_ : slow ? slow_ : fast_;
    return pool[static_cast<size_t>(slot) % pool.size()].stub.get();
  }

  void Register(Stream* s) {
    std::lock_guard<std::mutex> lock(live_mu_);
    live_.insert(s);
    if (interrupted_) s->Interrupt();  // started after the signal: cancel at once
  }
  void Unregister(Stream* s) {
    std::lock_guard<std::mutex> lock(live_mu_);
    live_.erase(s);
  }

  // Progress counters (the exact numbers are in the workers' RunStats).
  std::atomic<uint64_t> started{0}, completed{0}, cancelled{0}, failed{0};

 private:
  // Claims the next stream index, or false when the run has no more streams to start.
  bool NextIndex(uint64_t* index) {
    if (stop_.load()) return false;
    if (config_.total > 0) {
      const uint64_t i = next_index_.fetch_add(1);
      if (i >= config_.total) return false;
      *index = i;
      return true;
    }
    if (Clock::now() >= end_) return false;
    *index = next_index_.fetch_add(1);
    return true;
  }
  bool StartNext(Worker* w, int slot, bool delay) {
    uint64_t index = 0;
    if (!NextIndex(&index)) return false;
    started.fetch_add(1);
    auto* s = new Stream(this, w, slot, index, delay);
    Register(s);
    s->Begin();
    return true;
  }
  void WorkerLoop(Worker* w);
  // `window_bytes` > 0: a fixed HTTP/2 stream window of that size instead of BDP probing.
  std::vector<Endpoint> MakeChannels(int n, int window_bytes) const;
  int ConnectChannels(double* connect_s);
  void InterruptAll();

  const LoadConfig& config_;
  const std::vector<Budget> budgets_;
  const std::vector<int> cycle_;
  std::vector<Endpoint> fast_, slow_, stuck_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;  // set by Run before any channel
  std::atomic<uint64_t> next_index_{0};
  std::atomic<bool> stop_{false};
  Clock::time_point end_;
  std::mutex live_mu_;
  std::unordered_set<Stream*> live_;
  bool interrupted_ = false;  // guarded by live_mu_
};

Stream::Stream(Runner* runner, Worker* worker, int slot, uint64_t index, bool delay_start)
    : runner_(runner),
      worker_(worker),
      slot_(slot),
      index_(index),
      delay_start_(delay_start),
      rng_(StreamSeed(runner->config().seed, index)) {
  const LoadConfig& c = runner->config();
  // Both draws happen for every stream, so one fraction never shifts the other's picks.
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double slow_draw = u(rng_), cancel_draw = u(rng_);
  slow_ = slow_draw < c.slow_fraction;
  cancel_planned_ = cancel_draw < c.cancel_fraction;
  // Drawn after the others so that adding stuck readers leaves their picks alone. A
  // stuck stream is only that: it neither reads slowly nor cancels.
  if (c.stuck_fraction > 0 && u(rng_) < c.stuck_fraction) {
    stuck_ = true;
    slow_ = false;
    cancel_planned_ = false;
  }
  if (slow_) {
    // A burst of ~50 ms (at least 16 KiB) as flexgs-client uses: smooth, and a rate the
    // server actually sees. The bucket "sleeps" into pause_, and the pause is an Alarm.
    bucket_.emplace(c.slow_rate_bytes_per_s, std::max(16384.0, c.slow_rate_bytes_per_s * 0.05),
                    [this](Clock::duration d) { pause_ = d; });
  }
}

void Stream::Begin() {
  if (delay_start_) {
    alarm_ = std::make_unique<grpc::Alarm>();
    alarm_->Set(&worker_->cq, std::chrono::system_clock::now() + kRefusedBackoff, &alarm_tag_);
    return;
  }
  StartCall();
}

void Stream::StartCall() {
  started_ = true;
  const LoadConfig& c = runner_->config();
  ctx_.set_deadline(std::chrono::system_clock::now() +
                    std::chrono::microseconds(static_cast<int64_t>(c.timeout_s * 1e6)));
  if (!c.bearer_token.empty()) ctx_.AddMetadata("authorization", absl::StrCat("Bearer ", c.bearer_token));
  const v1::StreamSceneRequest request = runner_->RequestFor(index_);
  t0_ = Clock::now();
  reader_ = runner_->StubFor(slot_, slow_, stuck_)->PrepareAsyncStreamScene(&ctx_, request, &worker_->cq);
  reader_->StartCall(&start_tag_);
}

bool Stream::Handle(Op op, bool ok) {
  switch (op) {
    case Op::kStart:
      // Not ok: the call could not start; Finish has the status.
      if (ok) {
        Read();
      } else {
        Finish();
      }
      return false;
    case Op::kAlarm:
      alarm_.reset();
      if (!started_) {
        StartCall();
      } else if (stuck_paused_ && Clock::now() < stuck_until_ && !interrupted_.load()) {
        SleepStuck();
      } else {
        Read();
      }
      return false;
    case Op::kRead: {
      if (!ok) {
        Finish();
        return false;
      }
      ++messages_;
      payload_bytes_ += chunk_.payload().size();
      if (!draining_) {
        const double t = Seconds(t0_, Clock::now());
        if (runner_->config().verify) {
          Take(t);
        } else {
          TakeLight(t);
        }
      }
      if (stuck_ && header_seen_ && !stuck_paused_) {
        // Stop reading: the HTTP/2 window fills and the server's writes wait until its
        // stall watchdog ends the call. gRPC reports that end only through a read (a
        // Finish with unread messages waits for them), so after the pause drain what
        // was buffered; the status then says who ended the call.
        stuck_paused_ = true;
        draining_ = true;
        const auto pause = std::chrono::microseconds(static_cast<int64_t>(runner_->config().stuck_seconds * 1e6));
        stuck_until_ = Clock::now() + pause;
        SleepStuck();
        return false;
      }
      pause_ = Clock::duration::zero();
      if (bucket_ && !draining_) bucket_->Acquire(chunk_.ByteSizeLong());
      if (pause_ > Clock::duration::zero()) {
        // The token-bucket pause before the next read: meanwhile the HTTP/2 window
        // fills and the server's writes for this stream wait, as with a slow link.
        alarm_ = std::make_unique<grpc::Alarm>();
        alarm_->Set(&worker_->cq,
                    std::chrono::system_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(pause_),
                    &alarm_tag_);
      } else {
        Read();
      }
      return false;
    }
    case Op::kFinish:
      Record();
      return true;
  }
  return false;
}

void Stream::SleepStuck() {
  alarm_ = std::make_unique<grpc::Alarm>();
  alarm_->Set(&worker_->cq,
              std::chrono::system_clock::now() +
                  std::min<Clock::duration>(std::chrono::milliseconds(100), stuck_until_ - Clock::now()),
              &alarm_tag_);
}

void Stream::Reject(std::string why) {
  verify_error_ = absl::StrCat("message ", messages_ - 1, ": ", why);
  draining_ = true;
  ctx_.TryCancel();
}

void Stream::Take(double t) {
  auto applied = assembler_.Apply(chunk_);
  if (!applied.ok()) return Reject(std::string(applied.status().ToString()));
  switch (applied->kind) {
    case client::ApplyResult::Kind::kHeader:
      first_chunk_s_ = t;
      header_seen_ = true;
      total_messages_ = assembler_.header().total_messages();
      break;
    case client::ApplyResult::Kind::kLevelEnd:
      // The assembler checked the LEVEL_END sits at the header's position for its
      // level, so levels arrive as 0, 1, 2, ... and the index is the vector position.
      level_end_s_.push_back(t);
      break;
    case client::ApplyResult::Kind::kTrailer:
      trailer_seen_ = true;
      break;
    default:
      break;
  }
  if (cancel_planned_ && messages_ == 1 && header_seen_ && total_messages_ >= 2) {
    // A uniformly random point after the header and before the trailer: cancel once
    // that many messages have been taken (1: right after the header).
    cancel_after_ = std::uniform_int_distribution<uint64_t>(1, total_messages_ - 1)(rng_);
  }
  if (cancel_after_ > 0 && messages_ == cancel_after_ && !trailer_seen_) {
    cancelled_ = true;
    draining_ = true;
    ctx_.TryCancel();
  }
}

void Stream::TakeLight(double t) {
  if (chunk_.sequence() != next_sequence_) {
    return Reject(absl::StrCat("sequence ", chunk_.sequence(), ", expected ", next_sequence_));
  }
  if (Crc32c(chunk_.payload()) != chunk_.crc32c()) return Reject("CRC-32C mismatch");
  if (trailer_seen_) return Reject("message after the trailer");
  ++next_sequence_;
  switch (chunk_.kind()) {
    case v1::CHUNK_KIND_HEADER: {
      v1::StreamHeader h;
      if (header_seen_ || !h.ParseFromString(chunk_.payload())) return Reject("bad or repeated header");
      header_seen_ = true;
      first_chunk_s_ = t;
      total_messages_ = h.total_messages();
      break;
    }
    case v1::CHUNK_KIND_LEVEL_END:
      level_end_s_.push_back(t);
      break;
    case v1::CHUNK_KIND_TRAILER: {
      v1::StreamTrailer tr;
      if (!tr.ParseFromString(chunk_.payload()) || tr.messages() != messages_ || tr.messages() != total_messages_) {
        return Reject(absl::StrCat("trailer counts ", tr.messages(), " messages; received ", messages_,
                                   ", header said ", total_messages_));
      }
      trailer_seen_ = true;
      break;
    }
    default:
      if (!header_seen_) return Reject("block before the header");
      break;
  }
  if (cancel_planned_ && messages_ == 1 && header_seen_ && total_messages_ >= 2) {
    cancel_after_ = std::uniform_int_distribution<uint64_t>(1, total_messages_ - 1)(rng_);
  }
  if (cancel_after_ > 0 && messages_ == cancel_after_ && !trailer_seen_) {
    cancelled_ = true;
    draining_ = true;
    ctx_.TryCancel();
  }
}

void Stream::Record() {
  RunStats& st = worker_->stats;
  const double done_s = Seconds(t0_, Clock::now());
  ++st.started;
  st.payload_bytes += payload_bytes_;
  st.messages += messages_;
  if (slow_) ++st.slow_streams;
  LatencySamples& lat = slow_ ? st.slow : st.fast;
  auto keep_timings = [&](bool completed) {
    if (first_chunk_s_ >= 0) lat.first_chunk_s.push_back(first_chunk_s_);
    if (lat.level_end_s.size() < level_end_s_.size()) lat.level_end_s.resize(level_end_s_.size());
    for (size_t k = 0; k < level_end_s_.size(); ++k) lat.level_end_s[k].push_back(level_end_s_[k]);
    if (completed) lat.completion_s.push_back(done_s);
  };
  const bool whole = runner_->config().verify ? assembler_.complete() : trailer_seen_;
  if (!verify_error_.empty()) {
    ++st.verification_failures;
    st.example_error.emplace("VERIFICATION", Clip(verify_error_));
    runner_->failed.fetch_add(1);
  } else if (stuck_paused_ && !interrupted_.load()) {
    ++st.stuck;
    ++st.stuck_by_code[absl::StatusCodeToString(static_cast<absl::StatusCode>(status_.error_code()))];
  } else if (cancelled_) {
    ++st.cancelled;
    keep_timings(false);
    runner_->cancelled.fetch_add(1);
  } else if (status_.ok() && whole) {
    ++st.completed;
    keep_timings(true);
    runner_->completed.fetch_add(1);
  } else if (interrupted_.load()) {
    ++st.interrupted;
  } else if (status_.ok()) {
    // The server said OK but the stream is short: as bad as a corrupt message.
    ++st.verification_failures;
    st.example_error.emplace("VERIFICATION", absl::StrCat("status OK after ", messages_, " of ", total_messages_,
                                                          " messages, without a trailer"));
    runner_->failed.fetch_add(1);
  } else {
    // gRPC and absl share the canonical code numbering, and absl names them.
    const std::string code = absl::StatusCodeToString(static_cast<absl::StatusCode>(status_.error_code()));
    ++st.failed_by_code[code];
    st.example_error.emplace(code, Clip(status_.error_message()));
    runner_->failed.fetch_add(1);
  }
}

std::vector<Endpoint> Runner::MakeChannels(int n, int window_bytes) const {
  std::vector<Endpoint> out;
  for (int i = 0; i < n; ++i) {
    grpc::ChannelArguments args;
    // Without this, channels with equal arguments share one subchannel, i.e. one
    // connection, and --channels would change nothing on the wire.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(16 << 20);
    // A server restarted during a soak run should be reached again within seconds; the
    // default reconnect back-off grows to 120 s, failing every stream meanwhile.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    // gRPC's minimum connect timeout despite the name (see client/scene_client.cc):
    // 100 ms would time out TLS handshakes under load.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    if (window_bytes > 0) {
      args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, window_bytes);
    }
    Endpoint e;
    e.channel = grpc::CreateCustomChannel(config_.target, credentials_, args);
    e.stub = v1::SceneService::NewStub(e.channel);
    out.push_back(std::move(e));
  }
  return out;
}

// Connects every channel before the clock starts, so the first streams' time to first
// chunk is the server's, not TCP + HTTP/2 setup. Channels that fail (nothing listening)
// are not waited for: their streams fail with UNAVAILABLE and are counted. Returns how
// many channels are not READY.
int Runner::ConnectChannels(double* connect_s) {
  const auto t0 = Clock::now();
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(config_.connect_timeout_s * 1e3));
  std::vector<Endpoint*> all;
  for (auto& e : fast_) all.push_back(&e);
  for (auto& e : slow_) all.push_back(&e);
  for (auto& e : stuck_) all.push_back(&e);
  for (auto* e : all) e->channel->GetState(/*try_to_connect=*/true);  // all connect in parallel
  int not_ready = 0;
  for (auto* e : all) {
    grpc_connectivity_state s = e->channel->GetState(true);
    while (s != GRPC_CHANNEL_READY && s != GRPC_CHANNEL_TRANSIENT_FAILURE && s != GRPC_CHANNEL_SHUTDOWN) {
      if (!e->channel->WaitForStateChange(s, deadline)) break;
      s = e->channel->GetState(true);
    }
    if (s != GRPC_CHANNEL_READY) ++not_ready;
  }
  *connect_s = Seconds(t0, Clock::now());
  return not_ready;
}

void Runner::InterruptAll() {
  stop_.store(true);
  std::lock_guard<std::mutex> lock(live_mu_);
  interrupted_ = true;
  for (Stream* s : live_) s->Interrupt();
}

void Runner::WorkerLoop(Worker* w) {
  w->live_slots = static_cast<int>(w->slots.size());
  for (int slot : w->slots) {
    if (!StartNext(w, slot, false)) --w->live_slots;
  }
  if (w->live_slots == 0) w->cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (w->cq.Next(&tag, &ok)) {
    auto* t = static_cast<Stream::Tag*>(tag);
    Stream* s = t->stream;
    if (!s->Handle(t->op, ok)) continue;
    const int slot = s->slot();
    const bool refused = s->refused();
    Unregister(s);
    delete s;
    if (!StartNext(w, slot, refused) && --w->live_slots == 0) w->cq.Shutdown();
  }
  w->finished_at = Clock::now();
}

absl::StatusOr<RunStats> Runner::Run(RunInfo* info) {
  const LoadConfig& c = config_;
  // Slow readers get their own channels (window settings are per channel): their share
  // of the channels, at least one, taken from the others but leaving those at least one.
  const int channels = c.channels > 0 ? c.channels : (c.concurrency + kStreamsPerChannel - 1) / kStreamsPerChannel;
  const int slow_channels =
      c.slow_fraction > 0 ? std::max(1, static_cast<int>(std::lround(channels * c.slow_fraction))) : 0;
  const int stuck_channels =
      c.stuck_fraction > 0 ? std::max(1, static_cast<int>(std::lround(channels * c.stuck_fraction))) : 0;
  const int fast_channels = std::max(1, channels - slow_channels - stuck_channels);
  auto credentials = client::MakeChannelCredentials({c.tls_ca, c.tls_cert, c.tls_key});
  if (!credentials.ok()) return credentials.status();
  credentials_ = *std::move(credentials);
  fast_ = MakeChannels(fast_channels, 0);
  // Slow readers as flexgs-client with --max-bandwidth: a small fixed window (~100 ms of
  // data, 64 KiB..4 MiB) instead of BDP probing, whose megabytes of receive buffer would
  // hide the slow reader from the server for a long time. Stuck readers: the smallest
  // such window, so that not reading stalls the server's writes soon.
  slow_ = MakeChannels(slow_channels,
                       static_cast<int>(std::clamp(config_.slow_rate_bytes_per_s * 0.1, 65536.0, 4194304.0)));
  stuck_ = MakeChannels(stuck_channels, 65536);
  info->fast_channels = fast_channels;
  info->slow_channels = slow_channels;
  info->stuck_channels = stuck_channels;
  info->channels_not_ready = ConnectChannels(&info->connect_s);
  if (info->channels_not_ready > 0) {
    std::cerr << absl::StrFormat(
        "flexgs-loadgen: %d of %d channel(s) to %s not READY after %.1f s; their streams will "
        "fail and be counted\n",
        info->channels_not_ready, fast_channels + slow_channels + stuck_channels, c.target, info->connect_s);
  }

  int threads = c.threads > 0 ? c.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::clamp(threads, 1, c.concurrency);
  info->threads = threads;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < threads; ++i) workers.push_back(std::make_unique<Worker>());
  for (int slot = 0; slot < c.concurrency; ++slot) workers[slot % threads]->slots.push_back(slot);

  const double cpu0 = CpuSeconds();
  const auto t0 = Clock::now();
  end_ = t0 + std::chrono::microseconds(static_cast<int64_t>(c.duration_s * 1e6));
  std::atomic<int> running{threads};
  for (auto& w : workers) {
    w->thread = std::thread([this, &running, wp = w.get()] {
      WorkerLoop(wp);
      running.fetch_sub(1);
    });
  }

  // This thread watches for signals (blocked everywhere, so only sigtimedwait sees
  // them) and prints progress while the workers run.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  auto next_progress = t0 + std::chrono::milliseconds(static_cast<int64_t>(c.progress_s * 1e3));
  while (running.load() > 0) {
    const timespec wait{0, 100 * 1000 * 1000};
    const int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGINT || sig == SIGTERM) {
      std::cerr << "flexgs-loadgen: " << (sig == SIGINT ? "SIGINT" : "SIGTERM")
                << ": cancelling the streams in flight and reporting\n";
      InterruptAll();
    }
    if (c.progress_s > 0 && Clock::now() >= next_progress) {
      next_progress += std::chrono::milliseconds(static_cast<int64_t>(c.progress_s * 1e3));
      std::cerr << absl::StrFormat("[%6.0f s] started %d  completed %d  cancelled %d  failed %d\n",
                                   Seconds(t0, Clock::now()), started.load(), completed.load(), cancelled.load(),
                                   failed.load());
    }
  }
  RunStats stats;
  Clock::time_point last = t0;
  for (auto& w : workers) {
    w->thread.join();
    last = std::max(last, w->finished_at);
    stats.Merge(std::move(w->stats));
  }
  info->wall_s = Seconds(t0, last);
  info->client_cpu_s = CpuSeconds() - cpu0;
  return stats;
}

}  // namespace

absl::StatusOr<RunStats> RunLoad(const LoadConfig& config, RunInfo* info) {
  if (config.scenes.empty()) return absl::InvalidArgumentError("no scenes");
  if (config.concurrency < 1) return absl::InvalidArgumentError("concurrency must be >= 1");
  if (config.total == 0 && !(config.duration_s > 0)) return absl::InvalidArgumentError("need a total or a duration");
  if (config.slow_fraction > 0 && !(config.slow_rate_bytes_per_s > 0)) {
    return absl::InvalidArgumentError("slow readers need a read rate");
  }
  auto budgets = ParseBudgetMix(config.budgets_text);
  if (!budgets.ok()) return budgets.status();
  info->budgets.clear();
  for (const auto& b : *budgets) {
    info->budgets.push_back(b.weight == 1 ? b.label : absl::StrCat(b.label, "@", b.weight));
  }

  // Before any thread exists, so every thread inherits the mask (see the header).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Runner runner(config, *std::move(budgets));
  return runner.Run(info);
}

}  // namespace flexgs::loadgen
