// Little-endian binary serialisation: an append-only writer and a bounds-checked reader.
//
// One definition for the formats written by hand -- the optimiser state, training
// checkpoints, resume tokens, chunk headers, safetensors' length prefix -- so that they
// agree on byte order and no reader runs past its input. Scalars travel least
// significant byte first whatever the host; floats and doubles as their IEEE-754 bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace flexgs {
namespace byte_io_internal {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
inline constexpr bool kLittleEndianHost = true;
#else
inline constexpr bool kLittleEndianHost = false;
#endif

// Integers, enums, float and double (at most 8 bytes, so not long double): values whose
// bytes are the whole story. Not bool: a byte other than 0 or 1 read into one is
// undefined; formats store flags as uint8_t.
template <typename T>
inline constexpr bool kScalar = (std::is_arithmetic_v<T> || std::is_enum_v<T>)&&!std::is_same_v<T, bool> &&
                                sizeof(T) <= 8;

// The unsigned integer as wide as T, whose shifts spell out T's bytes.
template <typename T>
using Bits = std::conditional_t<
    sizeof(T) == 1, uint8_t,
    std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>>;

}  // namespace byte_io_internal

// Appends little-endian values to a caller's string (which must outlive the writer).
class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}

  // The sizeof(T) bytes of `v`, least significant first. The type is the format: pass
  // (or cast to) exactly the width the format has.
  template <typename T>
  void Put(T v) {
    static_assert(byte_io_internal::kScalar<T>, "Put takes integers, enums, float or double (flags: uint8_t)");
    byte_io_internal::Bits<T> u;
    std::memcpy(&u, &v, sizeof(T));
    char b[sizeof(T)];
    for (size_t i = 0; i < sizeof(T); ++i) b[i] = static_cast<char>((u >> (8 * i)) & 0xFF);
    out_->append(b, sizeof(T));
  }

  void PutBytes(std::string_view bytes) { out_->append(bytes.data(), bytes.size()); }

  // The floats one after another (as Put<float> each, in one copy on little-endian hosts).
  void PutFloats(absl::Span<const float> values) {
    if (values.empty()) return;  // data() may be null
    if constexpr (byte_io_internal::kLittleEndianHost) {
      out_->append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
    } else {
      for (float v : values) Put(v);
    }
  }

  size_t size() const { return out_->size(); }

 private:
  std::string* out_;
};

// Reads little-endian values from the front of a byte string, which must outlive the
// reader. Every read first checks that the bytes are there and says whether they were;
// a failed read consumes nothing.
class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}
  // absl::string_view is its own type in this Abseil build; both kinds of view are in use.
  explicit ByteReader(absl::string_view data) : data_(data.data(), data.size()) {}
  explicit ByteReader(const std::string& data) : data_(data) {}

  template <typename T>
  [[nodiscard]] bool Get(T* v) {
    static_assert(byte_io_internal::kScalar<T>, "Get takes integers, enums, float or double (flags: uint8_t)");
    if (remaining() < sizeof(T)) return false;
    byte_io_internal::Bits<T> u = 0;
    for (size_t i = 0; i < sizeof(T); ++i) {
      u |= static_cast<byte_io_internal::Bits<T>>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    }
    std::memcpy(v, &u, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }

  // The next `n` bytes, as a view into the reader's input.
  [[nodiscard]] bool Bytes(size_t n, std::string_view* out) {
    if (remaining() < n) return false;
    *out = data_.substr(pos_, n);
    pos_ += n;
    return true;
  }

  // The next `n` floats into *out (resized to n).
  [[nodiscard]] bool Floats(size_t n, std::vector<float>* out) {
    if (remaining() / sizeof(float) < n) return false;  // n * 4 could overflow
    out->resize(n);
    if (n == 0) return true;  // an empty vector's data() may be null: never offset or copy into it
    if constexpr (byte_io_internal::kLittleEndianHost) {
      std::memcpy(out->data(), data_.data() + pos_, n * sizeof(float));
      pos_ += n * sizeof(float);
    } else {
      for (float& v : *out) (void)Get(&v);  // the size was checked above
    }
    return true;
  }

  size_t remaining() const { return data_.size() - pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace flexgs
