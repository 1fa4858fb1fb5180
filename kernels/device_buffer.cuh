// Grow-only device memory and a packer of several arrays into one allocation, for the
// kernels/ .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "absl/status/status.h"
#include "kernels/cuda_check.cuh"

namespace flexgs {

// Grow-only device allocation. Renders reuse it, so steady state does no cudaMalloc;
// growth over-allocates by half so a slowly growing scene does not reallocate every frame.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);  // errors at teardown cannot be reported
  }

  absl::Status Reserve(size_t bytes) {
    if (bytes <= capacity_) return absl::OkStatus();
    size_t want = std::max(bytes, capacity_ + capacity_ / 2);
    if (ptr_ != nullptr) {
      FLEXGS_CUDA_RETURN_IF_ERROR(cudaFree(ptr_));
      ptr_ = nullptr;
      capacity_ = 0;
    }
    if (cudaMalloc(&ptr_, want) != cudaSuccess) {
      cudaGetLastError();  // clear the non-sticky OOM error and retry without headroom
      ptr_ = nullptr;
      want = bytes;
      FLEXGS_CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr_, want));
    }
    capacity_ = want;
    return absl::OkStatus();
  }

  char* data() const { return static_cast<char*>(ptr_); }
  size_t capacity() const { return capacity_; }

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

// Packs several arrays into one DeviceBuffer: Add() records aligned offsets,
// then Reserve() sizes the buffer once and Get() turns offsets into pointers.
class Carver {
 public:
  template <typename T>
  size_t Add(size_t count) {
    offset_ = (offset_ + kAlign - 1) / kAlign * kAlign;
    const size_t at = offset_;
    offset_ += count * sizeof(T);
    return at;
  }
  size_t bytes() const { return offset_ == 0 ? kAlign : offset_; }  // never a 0-byte buffer
  template <typename T>
  static T* Get(const DeviceBuffer& buffer, size_t at) {
    return reinterpret_cast<T*>(buffer.data() + at);
  }

 private:
  static constexpr size_t kAlign = 256;  // cudaMalloc alignment; keeps float4/int4 loads aligned
  size_t offset_ = 0;
};

}  // namespace flexgs
