// The listening socket's credentials from --tls-cert / --tls-key / --tls-ca.
//
// gRPC only parses the PEM when the port is bound: a garbage certificate, a garbage
// key or a key that does not match the certificate all make BuildAndStart fail with
// "Handshaker factory creation failed with TSI_INVALID_ARGUMENT" (gRPC 1.51), which
// the server could only report as "cannot listen". So every file is read and checked
// here with OpenSSL first, and each problem is reported with the flag and the path.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace flexgs::server {

struct ServerTlsFiles {
  std::string cert;       // PEM certificate chain, leaf first
  std::string key;        // PEM private key of the leaf
  std::string client_ca;  // PEM CA bundle: when set, clients must present a certificate it signed
};

struct ServerCredentials {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::string mode;  // "plaintext", "TLS" or "mutual TLS", for the startup log
};

// Plaintext when all three are empty. INVALID_ARGUMENT for a cert without a key (or
// the reverse), a CA without a cert, files that hold no PEM certificate / key, or a
// key that does not match the certificate; NOT_FOUND / PERMISSION_DENIED for files
// that cannot be read. Messages name the flag and the path, never key material.
absl::StatusOr<ServerCredentials> MakeServerCredentials(const ServerTlsFiles& files);

}  // namespace flexgs::server
