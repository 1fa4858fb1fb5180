// SHA-256 digests (OpenSSL EVP), used to checksum model bundle files and to
// derive content digests that identify a model.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace flexgs {

// Streaming SHA-256: Update() any number of times, then FinishHex(). Finishing
// resets the hasher, so one instance can digest several messages in turn.
// OpenSSL failures here can only mean memory exhaustion or a broken library;
// they abort rather than return a digest that silently matches nothing.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  // The 32-byte digest of everything passed to Update() since the last finish.
  std::array<uint8_t, 32> Finish();
  // Finish() as 64 lowercase hex characters.
  std::string FinishHex();

 private:
  void Reset();
  void* ctx_;  // EVP_MD_CTX*, kept opaque so OpenSSL headers stay out of ours
};

// Lowercase hex SHA-256 of `data` (64 characters).
std::string Sha256Hex(std::string_view data);

// True when `s` looks like a Sha256Hex result: exactly 64 lowercase hex digits.
bool IsSha256Hex(std::string_view s);

}  // namespace flexgs
