#include "client/channel_credentials.h"

#include <utility>

#include <grpcpp/security/credentials.h>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"

namespace flexgs::client {
namespace {

// Certificates and keys are a few KB, CA bundles a few hundred; tokens far less.
constexpr uint64_t kMaxFileBytes = 16 << 20;

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  auto bytes = ReadFileToString(path, kMaxFileBytes);
  if (!bytes.ok()) return absl::Status(bytes.status().code(), absl::StrCat(what, ": ", bytes.status().message()));
  if (bytes->find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", path, "' is not a PEM file"));
  }
  return *std::move(bytes);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const TlsFiles& files) {
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError(
        "mutual TLS needs both a client certificate (--tls-cert) and its key (--tls-key)");
  }
  if (files.ca.empty()) {
    if (!files.cert.empty()) {
      return absl::InvalidArgumentError("a TLS client certificate needs --tls-ca to verify the server");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  auto ca = ReadPem(files.ca, "TLS CA bundle");
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *std::move(ca);
  if (!files.cert.empty()) {
    auto cert = ReadPem(files.cert, "TLS client certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(files.key, "TLS client key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

absl::StatusOr<std::string> ReadBearerToken(const std::string& path) {
  auto text = ReadFileToString(path, kMaxFileBytes);
  if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat("token file: ", text.status().message()));
  std::string token = *std::move(text);
  while (!token.empty() &&
         (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' || token.back() == '\t')) {
    token.pop_back();
  }
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("token file '", path, "' is empty"));
  for (char c : token) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file '", path, "' holds whitespace or control characters inside the token"));
    }
  }
  return token;
}

}  // namespace flexgs::client
