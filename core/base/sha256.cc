#include "base/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

namespace flexgs {
namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "flexgs: fatal: OpenSSL SHA-256 %s failed\n", what);
  std::abort();
}

EVP_MD_CTX* Ctx(void* p) { return static_cast<EVP_MD_CTX*>(p); }

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) Die("context allocation");
  Reset();
}

Sha256::~Sha256() { EVP_MD_CTX_free(Ctx(ctx_)); }

void Sha256::Reset() {
  if (EVP_DigestInit_ex(Ctx(ctx_), EVP_sha256(), nullptr) != 1) Die("init");
}

void Sha256::Update(std::string_view data) {
  // EVP_DigestUpdate takes size_t, but feed bounded chunks anyway so no
  // implementation-specific length limit can ever be reached.
  constexpr size_t kChunk = size_t{1} << 30;
  while (!data.empty()) {
    const size_t n = data.size() < kChunk ? data.size() : kChunk;
    if (EVP_DigestUpdate(Ctx(ctx_), data.data(), n) != 1) Die("update");
    data.remove_prefix(n);
  }
}

std::array<uint8_t, 32> Sha256::Finish() {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(Ctx(ctx_), out.data(), &len) != 1 || len != out.size()) Die("final");
  Reset();
  return out;
}

std::string Sha256::FinishHex() {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::array<uint8_t, 32> digest = Finish();
  std::string hex(64, '0');
  for (size_t i = 0; i < digest.size(); ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 15];
  }
  return hex;
}

std::string Sha256Hex(std::string_view data) {
  Sha256 hasher;
  hasher.Update(data);
  return hasher.FinishHex();
}

bool IsSha256Hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace flexgs
