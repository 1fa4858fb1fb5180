// Channel credentials from the client tools' --tls-ca / --tls-cert / --tls-key, shared
// by SceneClient (flexgs-client), flexgs-loadgen and flexgs-health-probe so that all
// three speak to a TLS or mutual-TLS server the same way.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>

#include "absl/status/statusor.h"

namespace flexgs::client {

struct TlsFiles {
  std::string ca;    // PEM CA bundle to verify the server with; empty: plaintext
  std::string cert;  // PEM client certificate chain, for mutual TLS (with key)
  std::string key;   // its PEM private key
};

// TLS when `files.ca` is set (plus a client certificate when cert and key are),
// plaintext when all are empty. INVALID_ARGUMENT for a cert without a key (or the
// reverse), a cert without a CA, or a file that is not PEM; the file errors of
// ReadFileToString (NOT_FOUND, ...) for unreadable ones.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const TlsFiles& files);

// The bearer token in `path`: the file's text without trailing whitespace.
// INVALID_ARGUMENT for an empty token or one with whitespace or control characters
// inside (it would not survive the trip through a header); the message never
// contains the token.
absl::StatusOr<std::string> ReadBearerToken(const std::string& path);

}  // namespace flexgs::client
