// flexgs-health-probe: asks a server's grpc.health.v1.Health/Check, for container
// HEALTHCHECKs and scripts. Exit codes as grpc_health_probe:
//   0 SERVING, 1 bad arguments, 2 connection failed, 3 RPC failed, 4 not SERVING.
// Speaks TLS and mutual TLS as flexgs-client does (--tls-ca, --tls-cert, --tls-key);
// --tls-server-name checks the certificate for another name than the address's host
// (a pod probing itself on 127.0.0.1 with a certificate for its Service name). The
// health service needs no bearer token.
#include <chrono>
#include <iostream>
#include <string>

#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include "client/channel_credentials.h"
#include "grpc/health/v1/health.grpc.pb.h"

int main(int argc, char** argv) {
  std::string addr;
  std::string service;
  int timeout_ms = 1000;
  flexgs::client::TlsFiles tls;
  std::string tls_server_name;
  CLI::App app{"flexgs-health-probe: grpc.health.v1 check (exit 0 when SERVING)"};
  app.add_option("--addr", addr, "Server address HOST:PORT")->required();
  app.add_option("--service", service, "Service name (empty: the whole server)");
  app.add_option("--timeout-ms", timeout_ms, "Connect and RPC timeout, each")->check(CLI::Range(1, 3'600'000));
  app.add_option("--tls-ca", tls.ca, "Use TLS, verifying the server with this CA bundle (PEM)");
  app.add_option("--tls-cert", tls.cert, "Client certificate for mutual TLS (PEM)");
  app.add_option("--tls-key", tls.key, "Client key for mutual TLS (PEM)");
  app.add_option("--tls-server-name", tls_server_name,
                 "Name the server certificate must carry (default: the host of --addr)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 1;  // --help is fine; anything else is a bad argument
  }

  auto credentials = flexgs::client::MakeChannelCredentials(tls);
  if (!credentials.ok()) {
    std::cerr << "error: " << credentials.status().message() << "\n";
    return 1;
  }
  if (!tls_server_name.empty() && tls.ca.empty()) {
    std::cerr << "error: --tls-server-name needs --tls-ca\n";
    return 1;
  }
  grpc::ChannelArguments args;
  if (!tls_server_name.empty()) args.SetSslTargetNameOverride(tls_server_name);
  auto channel = grpc::CreateCustomChannel(addr, *credentials, args);
  const auto connect_deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms);
  if (!channel->WaitForConnected(connect_deadline)) {
    std::cerr << "error: cannot connect to " << addr << " within " << timeout_ms << " ms\n";
    return 2;
  }
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&ctx, request, &response);
  if (!status.ok()) {
    std::cerr << "error: health check of '" << service << "' failed: code " << status.error_code() << ": "
              << status.error_message() << "\n";
    return 3;
  }
  const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    std::cerr << "service '" << service << "' is " << name << "\n";
    return 4;
  }
  std::cout << "status: " << name << "\n";
  return 0;
}
