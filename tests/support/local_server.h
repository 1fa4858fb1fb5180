// An in-process flexgs server for client-side tests: one heuristic scene, "s", of
// 40,000 Gaussians at SH 3, so that a rate-limited lossless stream of it takes seconds.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "client/scene_client.h"
#include "gtest/gtest.h"
#include "server/plan_cache.h"
#include "server/scene_registry.h"
#include "server/scene_service.h"
#include "server/server_metrics.h"
#include "spdlog/spdlog.h"
#include "tests/support/test_models.h"

namespace flexgs::testing {

class LocalServer {
 public:
  LocalServer() {
    spdlog::set_level(spdlog::level::warn);
    ElasticModel model = HeuristicTestModel(40'000, 5, 3);
    model.digest = "scene-client-test";  // the registry serves only models with a digest
    EXPECT_TRUE(registry_.Add("s", "test", std::move(model)).ok());
    cache_ = std::make_unique<server::PlanCache>(server::PlanCache::Options{});
    service_ =
        std::make_unique<server::SceneService>(&registry_, cache_.get(), &metrics_, server::SceneServiceOptions{});
    service_->SetReady(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
  }
  ~LocalServer() {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  client::ConnectOptions connect_options() const {
    client::ConnectOptions o;
    o.address = address();
    return o;
  }

 private:
  server::SceneRegistry registry_;
  server::ServerMetrics metrics_;
  std::unique_ptr<server::PlanCache> cache_;
  std::unique_ptr<server::SceneService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// A lossless request for LocalServer's scene "s" at top ratio `ratio` over `ladder`.
inline client::StreamRequest LosslessRequest(double ratio, std::vector<double> ladder = {0.05, 0.1}) {
  client::StreamRequest r;
  r.scene_id = "s";
  r.ratio = ratio;
  r.ladder = std::move(ladder);
  r.encoding = v1::ENCODING_LOSSLESS;
  return r;
}

}  // namespace flexgs::testing
