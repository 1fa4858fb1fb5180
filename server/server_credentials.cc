#include "server/server_credentials.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <utility>

#include <grpcpp/security/server_credentials.h>

#include "absl/strings/str_cat.h"
#include "base/file_io.h"

namespace flexgs::server {
namespace {

// PEM files are a few KB; a CA bundle a few hundred KB.
constexpr uint64_t kMaxPemBytes = 16 << 20;

absl::StatusOr<std::string> ReadPemFile(const char* flag, const std::string& path) {
  auto text = ReadFileToString(path, kMaxPemBytes);
  if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat(flag, ": ", text.status().message()));
  return *std::move(text);
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

BioPtr MemoryBio(const std::string& pem) { return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))); }

// The certificates in `pem`, first one returned (null when there is none); `*count`
// gets how many parsed.
X509Ptr ParseCertificates(const std::string& pem, int* count) {
  BioPtr bio = MemoryBio(pem);
  X509Ptr first;
  *count = 0;
  while (bio != nullptr) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) break;
    if (++*count == 1) first = std::move(cert);
  }
  ERR_clear_error();  // the end of the file reads as an error
  return first;
}

}  // namespace

absl::StatusOr<ServerCredentials> MakeServerCredentials(const ServerTlsFiles& files) {
  ServerCredentials out;
  if (files.cert.empty() && files.key.empty()) {
    if (!files.client_ca.empty()) {
      return absl::InvalidArgumentError("--tls-ca (client certificates) needs --tls-cert and --tls-key");
    }
    out.credentials = grpc::InsecureServerCredentials();
    out.mode = "plaintext";
    return out;
  }
  if (files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError("TLS needs both --tls-cert and --tls-key");
  }
  auto cert_pem = ReadPemFile("--tls-cert", files.cert);
  if (!cert_pem.ok()) return cert_pem.status();
  auto key_pem = ReadPemFile("--tls-key", files.key);
  if (!key_pem.ok()) return key_pem.status();

  int chain_length = 0;
  X509Ptr leaf = ParseCertificates(*cert_pem, &chain_length);
  if (leaf == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-cert '", files.cert, "' holds no PEM certificate"));
  }
  BioPtr key_bio = MemoryBio(*key_pem);
  // A callback that supplies no passphrase: OpenSSL's default would prompt on the
  // terminal for an encrypted key and block startup.
  pem_password_cb* no_passphrase = [](char*, int, int, void*) { return 0; };
  KeyPtr key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-key '", files.key, "' holds no unencrypted PEM private key"));
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key '", files.key, "' is not the key of the first certificate in --tls-cert '", files.cert, "'"));
  }

  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  out.mode = "TLS";
  if (!files.client_ca.empty()) {
    auto ca_pem = ReadPemFile("--tls-ca", files.client_ca);
    if (!ca_pem.ok()) return ca_pem.status();
    int cas = 0;
    if (ParseCertificates(*ca_pem, &cas) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("--tls-ca '", files.client_ca, "' holds no PEM certificate"));
    }
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    ssl.pem_root_certs = *std::move(ca_pem);
    out.mode = "mutual TLS";
  }
  ssl.pem_key_cert_pairs.push_back({*std::move(key_pem), *std::move(cert_pem)});
  out.credentials = grpc::SslServerCredentials(ssl);
  return out;
}

}  // namespace flexgs::server
