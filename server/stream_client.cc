// flexgs-stream-client: streams one scene and verifies it message by message
// (sequence numbers, CRC-32C, payload kinds, trailer totals). It can read slowly
// or stop early, which is what the process test and manual load checks need.
//   flexgs-stream-client --addr 127.0.0.1:50051 --scene guitar --ratio 0.1
// Exit codes: 0 stream complete and verified, 1 bad arguments, 2 RPC error (the
// status code name is printed), 3 verification failed, 4 stopped early on request.
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include "base/crc32c.h"
#include "flexgs/v1/scene_service.grpc.pb.h"

namespace {

const char* CodeName(grpc::StatusCode c) {
  static const char* kNames[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr = "127.0.0.1:50051", scene, encoding = "quantized", payload_out, token_file;
  double ratio = 0;
  uint64_t memory_bytes = 0, gaussians = 0, stop_after = 0, resume_from = 0;
  int read_delay_ms = 0;
  double timeout_s = 600;
  CLI::App app{"flexgs-stream-client: stream and verify one scene"};
  app.add_option("--addr", addr, "Server HOST:PORT")->capture_default_str();
  app.add_option("--scene", scene, "Scene id");
  auto* r = app.add_option("--ratio", ratio, "Budget as a top ratio in (0, 1]");
  auto* m = app.add_option("--memory-bytes", memory_bytes, "Budget as client resident bytes");
  auto* g = app.add_option("--gaussians", gaussians, "Budget as a Gaussian count");
  r->excludes(m)->excludes(g);
  m->excludes(g);
  app.add_option("--encoding", encoding, "quantized or lossless")->capture_default_str();
  uint32_t max_chunk_bytes = 0;
  app.add_option("--max-chunk-bytes", max_chunk_bytes, "Largest message wanted (0: server default)");
  app.add_option("--stop-after", stop_after, "Cancel after this many messages (0: read all)");
  app.add_option("--read-delay-ms", read_delay_ms, "Sleep before each read (a slow client)");
  app.add_option("--timeout-s", timeout_s, "Call deadline in seconds")->capture_default_str();
  app.add_option("--payload-out", payload_out, "Write the concatenated payloads here");
  app.add_option("--token-out", token_file, "Write the header's resume token here");
  std::string token_in;
  app.add_option("--resume-token", token_in, "Resume with the token in this file");
  app.add_option("--resume-from", resume_from, "First sequence wanted when resuming");
  CLI11_PARSE(app, argc, argv);

  flexgs::v1::StreamSceneRequest request;
  request.set_scene_id(scene);
  if (*r) request.set_ratio(ratio);
  if (*m) request.set_memory_bytes(memory_bytes);
  if (*g) request.set_gaussians(gaussians);
  request.set_max_chunk_bytes(max_chunk_bytes);
  if (encoding == "lossless") {
    request.set_encoding(flexgs::v1::ENCODING_LOSSLESS);
  } else if (encoding != "quantized") {
    std::cerr << "--encoding must be quantized or lossless\n";
    return 1;
  }
  if (!token_in.empty()) {
    std::ifstream in(token_in, std::ios::binary);
    std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    request.set_resume_token(token);
    request.set_resume_from_sequence(resume_from);
  }

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  auto channel = grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
  auto stub = flexgs::v1::SceneService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  const auto t0 = std::chrono::steady_clock::now();
  auto reader = stub->StreamScene(&ctx, request);

  std::ofstream payloads;
  if (!payload_out.empty()) payloads.open(payload_out, std::ios::binary);
  flexgs::v1::StreamChunk chunk;
  uint64_t expected = resume_from, messages = 0, bytes = 0, levels = 0, total = 0;
  bool trailer = false, bad = false, stopped = false;
  std::string why;
  while (true) {
    if (read_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(read_delay_ms));
    if (!reader->Read(&chunk)) break;
    if (chunk.sequence() != expected) {
      bad = true;
      why = "sequence " + std::to_string(chunk.sequence()) + ", expected " + std::to_string(expected);
    } else if (flexgs::Crc32c(chunk.payload()) != chunk.crc32c()) {
      bad = true;
      why = "CRC mismatch at sequence " + std::to_string(chunk.sequence());
    }
    ++expected;
    ++messages;
    bytes += chunk.payload().size();
    if (payloads.is_open()) payloads << chunk.payload();
    if (chunk.kind() == flexgs::v1::CHUNK_KIND_HEADER) {
      flexgs::v1::StreamHeader h;
      if (!h.ParseFromString(chunk.payload())) {
        bad = true;
        why = "unparsable header";
      }
      total = h.total_messages();
      if (!token_file.empty()) std::ofstream(token_file, std::ios::binary) << h.resume_token();
    } else if (chunk.kind() == flexgs::v1::CHUNK_KIND_LEVEL_END) {
      ++levels;
    } else if (chunk.kind() == flexgs::v1::CHUNK_KIND_TRAILER) {
      flexgs::v1::StreamTrailer t;
      trailer = t.ParseFromString(chunk.payload());
      if (trailer && t.messages() != chunk.sequence() + 1) {
        bad = true;
        why = "trailer counts " + std::to_string(t.messages()) + " messages";
      }
    }
    if (bad) break;
    if (stop_after > 0 && messages >= stop_after) {
      stopped = true;
      ctx.TryCancel();
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "messages=" << messages << " bytes=" << bytes << " levels=" << levels << " total=" << total
            << " seconds=" << secs << " status=" << CodeName(status.error_code()) << "\n";
  if (bad) {
    std::cerr << "verification failed: " << why << "\n";
    return 3;
  }
  if (stopped) return 4;
  if (!status.ok()) {
    std::cerr << "rpc error " << CodeName(status.error_code()) << ": " << status.error_message() << "\n";
    return 2;
  }
  if (!trailer) {
    std::cerr << "stream ended without a trailer\n";
    return 3;
  }
  return 0;
}
