// An in-process flexgs server for client-side tests: one heuristic scene, "s", of
// 40,000 Gaussians at SH 3, so that a rate-limited lossless stream of it takes seconds.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

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

 private:
  server::SceneRegistry registry_;
  server::ServerMetrics metrics_;
  std::unique_ptr<server::PlanCache> cache_;
  std::unique_ptr<server::SceneService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace flexgs::testing
