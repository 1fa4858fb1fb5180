// CUDA rasterizer: the GPU twin of CpuRasterizer (core/cpu_rasterizer.h).
//
// Stages, one kernel or CUB call each (the gsplat / INRIA layout, see
// shared/docs/reference/rendering-reference.md sections 1-2):
//   (a) ProjectKernel     EWA projection, SH colour and tiles-touched count per Gaussian
//   (b) DeviceScan        inclusive sum of the counts -> per-Gaussian write offsets
//   (c) EmitKernel        one (tile<<32 | depth key, Gaussian id) pair per touched tile
//   (d) DeviceRadixSort   stable sort of the pairs by key
//   (e) TileRangesKernel  [start, end) of every tile in the sorted list
//   (f) RenderKernel      one 16x16 block per tile, front-to-back blending
//
// Equality with the CPU reference is by construction: every per-Gaussian and
// per-pixel expression comes from core/raster_math.h, and the CPU's per-tile
// (depth, id) order is reproduced because (c) emits pairs in Gaussian-id order and
// the radix sort is stable, so equal depths keep id order. What remains are float
// differences (device expf vs libm, FMA contraction), covered by the test tolerance.
#include "kernels/cuda_rasterizer.h"

#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/raster_math.h"
#include "core/status_macros.h"

namespace flexgs {
namespace {

constexpr int kTile = raster::kTileSize;
constexpr int kBlockPixels = kTile * kTile;  // render threads per block == Gaussians per batch
constexpr int kThreads1D = 256;              // threads per block for the per-item kernels

absl::Status CudaError(const char* what, cudaError_t err) {
  return absl::InternalError(
      absl::StrCat("CUDA error in ", what, ": ", cudaGetErrorString(err), " (", cudaGetErrorName(err), ")"));
}

#define FLEXGS_CUDA_RETURN_IF_ERROR(expr)                                           \
  do {                                                                              \
    const cudaError_t flexgs_cuda_err_ = (expr);                                    \
    if (flexgs_cuda_err_ != cudaSuccess) return CudaError(#expr, flexgs_cuda_err_); \
  } while (0)

// Kernel launches report configuration errors only through cudaGetLastError.
#define FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED(kernel_name)                                               \
  do {                                                                                                 \
    const cudaError_t flexgs_cuda_err_ = cudaGetLastError();                                           \
    if (flexgs_cuda_err_ != cudaSuccess) return CudaError("launch of " kernel_name, flexgs_cuda_err_); \
  } while (0)

unsigned int Blocks1D(size_t n) { return static_cast<unsigned int>((n + kThreads1D - 1) / kThreads1D); }

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

// Radix-sortable 32-bit image of a depth whose unsigned order equals the float order
// (positive floats get the sign bit set, negative ones are inverted). For depth > 0
// (near_plane >= 0) this orders exactly like the raw float bits that the CPU and
// gsplat/INRIA sort on; unlike raw bits it stays a correct order if a caller sets
// near_plane < 0. -0 is folded into +0 so that the pair ties and falls back to id.
__device__ __forceinline__ uint32_t DepthKey(float depth) {
  if (depth == 0.0f) depth = 0.0f;
  const uint32_t u = __float_as_uint(depth);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// (a) Projection, colour and tile count.
__global__ void __launch_bounds__(kThreads1D)
    ProjectKernel(int n, const float* __restrict__ positions, const float* __restrict__ log_scales,
                  const float* __restrict__ rotations, const float* __restrict__ opacity_logits,
                  const float* __restrict__ sh_dc, const float* __restrict__ sh_rest, int sh_degree, int rest_coeffs,
                  raster::CameraParams cam, raster::RadiusMode mode, int tiles_x, int tiles_y, float2* __restrict__ xy,
                  float4* __restrict__ conic_opacity, float4* __restrict__ rgb, float* __restrict__ depth,
                  int4* __restrict__ rect, unsigned long long* __restrict__ tiles_touched,
                  unsigned int* __restrict__ visible_count) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  bool visible = false;
  if (i < n) {
    raster::Projected p;
    unsigned long long count = 0;
    if (raster::ProjectGaussian(positions + 3 * static_cast<size_t>(i), log_scales + 3 * static_cast<size_t>(i),
                                rotations + 4 * static_cast<size_t>(i), opacity_logits[i], cam, mode, &p)) {
      int x0, y0, x1, y1;
      raster::TileRect(p, tiles_x, tiles_y, &x0, &y0, &x1, &y1);
      count = static_cast<unsigned long long>(x1 - x0) * static_cast<unsigned long long>(y1 - y0);
      // "Visible" as the CPU counts it: projected and touching at least one tile
      // (a footprint exactly on the image's far edge gets an empty rect).
      visible = count > 0;
      const float* pos = positions + 3 * static_cast<size_t>(i);
      float c[3];
      raster::EvalShColor(sh_degree, sh_dc + 3 * static_cast<size_t>(i),
                          sh_rest + static_cast<size_t>(i) * 3 * rest_coeffs, rest_coeffs, pos[0] - cam.campos[0],
                          pos[1] - cam.campos[1], pos[2] - cam.campos[2], c);
      xy[i] = make_float2(p.mean_x, p.mean_y);
      conic_opacity[i] = make_float4(p.conic_a, p.conic_b, p.conic_c, p.opacity);
      rgb[i] = make_float4(c[0], c[1], c[2], 0.0f);
      depth[i] = p.depth;
      // Stored rather than recomputed in (c), so the emitted pairs always match the
      // count that sized the buffers.
      rect[i] = make_int4(x0, y0, x1, y1);
    }
    tiles_touched[i] = count;
  }
  // One atomic per warp instead of one per visible Gaussian. Every lane of a
  // launched warp reaches this point (no early return above).
  const unsigned int mask = __ballot_sync(0xffffffffu, visible);
  if ((threadIdx.x & 31) == 0 && mask != 0) atomicAdd(visible_count, static_cast<unsigned int>(__popc(mask)));
}

// (c) Duplicate each Gaussian once per touched tile, in Gaussian order.
__global__ void __launch_bounds__(kThreads1D)
    EmitKernel(int n, const unsigned long long* __restrict__ offsets_inclusive, const int4* __restrict__ rect,
               const float* __restrict__ depth, int tiles_x, unsigned long long* __restrict__ keys,
               uint32_t* __restrict__ ids) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned long long end = offsets_inclusive[i];
  unsigned long long out = i == 0 ? 0ull : offsets_inclusive[i - 1];
  if (out == end) return;  // culled (rect is not written for those) or no tile
  const int4 r = rect[i];
  const unsigned long long depth_key = DepthKey(depth[i]);
  for (int ty = r.y; ty < r.w; ++ty) {
    for (int tx = r.x; tx < r.z; ++tx) {
      const unsigned long long tile = static_cast<unsigned long long>(ty) * tiles_x + tx;
      keys[out] = (tile << 32) | depth_key;
      ids[out] = static_cast<uint32_t>(i);
      ++out;
    }
  }
}

// (e) Tile ranges from the sorted keys; tiles with no entry keep the memset (0, 0).
__global__ void __launch_bounds__(kThreads1D)
    TileRangesKernel(int count, const unsigned long long* __restrict__ keys, uint2* __restrict__ ranges) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const uint32_t tile = static_cast<uint32_t>(keys[i] >> 32);
  if (i == 0) {
    ranges[tile].x = 0;
  } else {
    const uint32_t prev = static_cast<uint32_t>(keys[i - 1] >> 32);
    if (prev != tile) {
      ranges[prev].y = static_cast<uint32_t>(i);
      ranges[tile].x = static_cast<uint32_t>(i);
    }
  }
  if (i == count - 1) ranges[tile].y = static_cast<uint32_t>(count);
}

// (f) One block per tile, one thread per pixel. The block walks its tile's sorted
// list in batches staged through shared memory (one coalesced load per Gaussian per
// block instead of one per pixel), and stops as soon as every pixel is saturated.
__global__ void __launch_bounds__(kBlockPixels)
    RenderKernel(const uint2* __restrict__ ranges, const uint32_t* __restrict__ ids, const float2* __restrict__ xy,
                 const float4* __restrict__ conic_opacity, const float4* __restrict__ rgb, int width, int height,
                 float3 background, float* __restrict__ out_color, float* __restrict__ out_transmittance,
                 uint32_t* __restrict__ out_contributors) {
  __shared__ float2 s_xy[kBlockPixels];
  __shared__ float4 s_conic_opacity[kBlockPixels];
  __shared__ float4 s_rgb[kBlockPixels];

  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int px = blockIdx.x * kTile + threadIdx.x;
  const int py = blockIdx.y * kTile + threadIdx.y;
  const bool inside = px < width && py < height;
  const uint2 range = ranges[blockIdx.y * gridDim.x + blockIdx.x];

  bool done = !inside;  // pixels past the image edge only help load batches
  float T = 1.0f;
  float C[3] = {0.0f, 0.0f, 0.0f};
  uint32_t contributors = 0;

  for (uint32_t base = range.x; base < range.y; base += kBlockPixels) {
    // Doubles as the barrier that keeps the previous batch alive until all are done.
    if (__syncthreads_count(done) == kBlockPixels) break;
    const uint32_t idx = base + tid;
    if (idx < range.y) {
      const uint32_t g = ids[idx];
      s_xy[tid] = xy[g];
      s_conic_opacity[tid] = conic_opacity[g];
      s_rgb[tid] = rgb[g];
    }
    __syncthreads();
    const int batch = static_cast<int>(min(static_cast<uint32_t>(kBlockPixels), range.y - base));
    for (int j = 0; !done && j < batch; ++j) {
      // Same tests, constants and order as the CPU blend loop.
      raster::Projected p{};
      p.mean_x = s_xy[j].x;
      p.mean_y = s_xy[j].y;
      const float4 co = s_conic_opacity[j];
      p.conic_a = co.x;
      p.conic_b = co.y;
      p.conic_c = co.z;
      const float power = raster::FalloffPower(p, px, py);
      if (power > 0.0f) continue;
      const float alpha = fminf(raster::kAlphaMax, co.w * expf(power));
      if (alpha < raster::kAlphaMin) continue;
      const float next_T = T * (1.0f - alpha);
      if (next_T < raster::kTransmittanceMin) {
        done = true;
        break;
      }
      const float weight = alpha * T;
      const float4 c = s_rgb[j];
      C[0] += c.x * weight;
      C[1] += c.y * weight;
      C[2] += c.z * weight;
      T = next_T;
      ++contributors;
    }
  }

  if (inside) {
    const size_t pix = static_cast<size_t>(py) * width + px;
    out_color[pix * 3 + 0] = C[0] + T * background.x;
    out_color[pix * 3 + 1] = C[1] + T * background.y;
    out_color[pix * 3 + 2] = C[2] + T * background.z;
    out_transmittance[pix] = T;
    out_contributors[pix] = contributors;
  }
}

// Smallest b with 2^b >= count: the bits the tile id needs in the sort key.
int BitsFor(uint64_t count) {
  int bits = 0;
  while (bits < 32 && (uint64_t{1} << bits) < count) ++bits;
  return bits;
}

struct HostCounters {
  unsigned long long intersections;
  unsigned int visible;
};

class CudaRasterizer final : public CudaRasterBackend {
 public:
  CudaRasterizer() = default;
  CudaRasterizer(const CudaRasterizer&) = delete;
  CudaRasterizer& operator=(const CudaRasterizer&) = delete;
  ~CudaRasterizer() override {
    // Teardown errors (e.g. the runtime already unloaded at exit) cannot be reported.
    if (stream_ != nullptr) {
      cudaStreamSynchronize(stream_);
      cudaStreamDestroy(stream_);
    }
    if (host_counters_ != nullptr) cudaFreeHost(host_counters_);
  }

  std::string_view name() const override { return "cuda"; }

  absl::StatusOr<RenderResult> Render(const GaussianCloud& cloud, const Camera& camera,
                                      const RenderOptions& options) override;
  absl::StatusOr<RenderResult> RenderDevice(const DeviceCloudView& cloud, const Camera& camera,
                                            const RenderOptions& options) override;

  uint64_t ScratchBytes() const override {
    return attributes_.capacity() + per_gaussian_.capacity() + pairs_.capacity() + temp_.capacity() +
           image_.capacity();
  }

 private:
  absl::Status Init();
  // Stages (a)-(f) on attributes already in device memory.
  absl::StatusOr<RenderResult> RenderView(const DeviceCloudView& cloud, const Camera& camera,
                                          const RenderOptions& options);

  cudaStream_t stream_ = nullptr;
  HostCounters* host_counters_ = nullptr;  // pinned, so the readback is a true async copy
  DeviceBuffer attributes_;                // uploaded cloud
  DeviceBuffer per_gaussian_;              // projection results, counts, offsets, visible counter
  DeviceBuffer pairs_;                     // sort keys and ids, double-buffered
  DeviceBuffer temp_;                      // CUB scratch (scan, then sort)
  DeviceBuffer image_;                     // tile ranges and outputs
};

absl::Status CudaRasterizer::Init() {
  // A stream of our own keeps renders from serialising with unrelated work on the
  // legacy default stream. Each piece is retried on the next Render if it failed.
  if (stream_ == nullptr) {
    cudaStream_t stream = nullptr;
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    stream_ = stream;
  }
  if (host_counters_ == nullptr) {
    void* pinned = nullptr;
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned, sizeof(HostCounters)));
    host_counters_ = static_cast<HostCounters*>(pinned);
  }
  return absl::OkStatus();
}

absl::StatusOr<RenderResult> CudaRasterizer::Render(const GaussianCloud& cloud, const Camera& camera,
                                                    const RenderOptions& options) {
  FLEXGS_RETURN_IF_ERROR(cloud.Validate());
  FLEXGS_RETURN_IF_ERROR(camera.Validate());
  if (cloud.size() > static_cast<size_t>(INT_MAX)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the CUDA rasterizer handles at most ", INT_MAX, " Gaussians, got ", cloud.size()));
  }
  FLEXGS_RETURN_IF_ERROR(Init());
  DeviceCloudView view;
  view.count = cloud.size();
  view.sh_degree = cloud.sh_degree;
  if (!cloud.empty()) {
    // Upload the cloud: one copy per attribute into one reused allocation.
    Carver attr;
    const size_t at_pos = attr.Add<float>(cloud.positions.size());
    const size_t at_scale = attr.Add<float>(cloud.log_scales.size());
    const size_t at_rot = attr.Add<float>(cloud.rotations.size());
    const size_t at_logit = attr.Add<float>(cloud.opacity_logits.size());
    const size_t at_dc = attr.Add<float>(cloud.sh_dc.size());
    const size_t at_rest = attr.Add<float>(cloud.sh_rest.size());
    FLEXGS_RETURN_IF_ERROR(attributes_.Reserve(attr.bytes()));
    const std::pair<size_t, const std::vector<float>*> uploads[] = {
        {at_pos, &cloud.positions},        {at_scale, &cloud.log_scales}, {at_rot, &cloud.rotations},
        {at_logit, &cloud.opacity_logits}, {at_dc, &cloud.sh_dc},         {at_rest, &cloud.sh_rest}};
    for (const auto& [at, host] : uploads) {
      if (host->empty()) continue;
      FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(Carver::Get<float>(attributes_, at), host->data(),
                                                  host->size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
    }
    view.positions = Carver::Get<float>(attributes_, at_pos);
    view.log_scales = Carver::Get<float>(attributes_, at_scale);
    view.rotations = Carver::Get<float>(attributes_, at_rot);
    view.opacity_logits = Carver::Get<float>(attributes_, at_logit);
    view.sh_dc = Carver::Get<float>(attributes_, at_dc);
    view.sh_rest = Carver::Get<float>(attributes_, at_rest);
  }
  return RenderView(view, camera, options);
}

absl::StatusOr<RenderResult> CudaRasterizer::RenderDevice(const DeviceCloudView& cloud, const Camera& camera,
                                                          const RenderOptions& options) {
  FLEXGS_RETURN_IF_ERROR(camera.Validate());
  if (cloud.sh_degree < 0 || cloud.sh_degree > kMaxShDegree) {
    return absl::InvalidArgumentError(absl::StrCat("device cloud SH degree ", cloud.sh_degree, " is not in 0..3"));
  }
  if (cloud.count > static_cast<size_t>(INT_MAX)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the CUDA rasterizer handles at most ", INT_MAX, " Gaussians, got ", cloud.count));
  }
  if (cloud.count > 0 && (cloud.positions == nullptr || cloud.log_scales == nullptr || cloud.rotations == nullptr ||
                          cloud.opacity_logits == nullptr || cloud.sh_dc == nullptr ||
                          (cloud.sh_degree > 0 && cloud.sh_rest == nullptr))) {
    return absl::InvalidArgumentError("device cloud has a null attribute pointer");
  }
  FLEXGS_RETURN_IF_ERROR(Init());
  return RenderView(cloud, camera, options);
}

absl::StatusOr<RenderResult> CudaRasterizer::RenderView(const DeviceCloudView& cloud, const Camera& camera,
                                                        const RenderOptions& options) {
  const int n = static_cast<int>(cloud.count);
  const int width = camera.width, height = camera.height;
  const int tiles_x = (width + kTile - 1) / kTile;
  const int tiles_y = (height + kTile - 1) / kTile;
  const size_t tiles = static_cast<size_t>(tiles_x) * tiles_y;
  const size_t pixels = static_cast<size_t>(width) * height;
  const raster::CameraParams cam = ToCameraParams(camera, options.near_plane);
  const int sh_degree = std::max(0, std::min(options.max_sh_degree, cloud.sh_degree));
  const int rest_coeffs = ShRestCoeffs(cloud.sh_degree);

  RenderResult result;
  result.color = Image(width, height, 3);
  auto fill_background = [&] {
    for (size_t p = 0; p < pixels; ++p)
      for (int c = 0; c < 3; ++c) result.color.pixels[p * 3 + c] = options.background[c];
    if (options.want_aux) {
      result.final_transmittance.assign(pixels, 1.0f);
      result.contributors.assign(pixels, 0u);
    }
  };
  if (n == 0) {
    fill_background();
    return result;
  }

  Carver gauss;
  const size_t at_xy = gauss.Add<float2>(n);
  const size_t at_conic = gauss.Add<float4>(n);
  const size_t at_rgb = gauss.Add<float4>(n);
  const size_t at_depth = gauss.Add<float>(n);
  const size_t at_rect = gauss.Add<int4>(n);
  const size_t at_counts = gauss.Add<unsigned long long>(n);
  const size_t at_offsets = gauss.Add<unsigned long long>(n);
  const size_t at_visible = gauss.Add<unsigned int>(1);
  FLEXGS_RETURN_IF_ERROR(per_gaussian_.Reserve(gauss.bytes()));
  auto* d_xy = Carver::Get<float2>(per_gaussian_, at_xy);
  auto* d_conic = Carver::Get<float4>(per_gaussian_, at_conic);
  auto* d_rgb = Carver::Get<float4>(per_gaussian_, at_rgb);
  auto* d_depth = Carver::Get<float>(per_gaussian_, at_depth);
  auto* d_rect = Carver::Get<int4>(per_gaussian_, at_rect);
  auto* d_counts = Carver::Get<unsigned long long>(per_gaussian_, at_counts);
  auto* d_offsets = Carver::Get<unsigned long long>(per_gaussian_, at_offsets);
  auto* d_visible = Carver::Get<unsigned int>(per_gaussian_, at_visible);

  // (a)
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(d_visible, 0, sizeof(unsigned int), stream_));
  ProjectKernel<<<Blocks1D(n), kThreads1D, 0, stream_>>>(
      n, cloud.positions, cloud.log_scales, cloud.rotations, cloud.opacity_logits, cloud.sh_dc, cloud.sh_rest,
      sh_degree, rest_coeffs, cam,
      options.radius_mode, tiles_x, tiles_y, d_xy, d_conic, d_rgb, d_depth, d_rect, d_counts, d_visible);
  FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("ProjectKernel");

  // (b) 64-bit offsets so that an absurd intersection count is detected, not wrapped.
  size_t scan_bytes = 0;
  FLEXGS_CUDA_RETURN_IF_ERROR(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, d_counts, d_offsets, n, stream_));
  FLEXGS_RETURN_IF_ERROR(temp_.Reserve(scan_bytes));
  FLEXGS_CUDA_RETURN_IF_ERROR(cub::DeviceScan::InclusiveSum(temp_.data(), scan_bytes, d_counts, d_offsets, n, stream_));

  // The pair buffers are sized by the total, so it has to come back to the host
  // (INRIA does the same single readback).
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&host_counters_->intersections, d_offsets + (n - 1),
                                              sizeof(unsigned long long), cudaMemcpyDeviceToHost, stream_));
  FLEXGS_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(&host_counters_->visible, d_visible, sizeof(unsigned int), cudaMemcpyDeviceToHost, stream_));
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  const unsigned long long total = host_counters_->intersections;
  result.visible = host_counters_->visible;
  result.intersections = static_cast<size_t>(total);
  if (total > static_cast<unsigned long long>(INT_MAX)) {
    // CUB's item counts and the uint32 tile ranges are 32-bit.
    return absl::ResourceExhaustedError(
        absl::StrCat("too many Gaussian-tile intersections for the CUDA rasterizer: ", total, " > ", INT_MAX));
  }
  if (total == 0) {
    fill_background();
    return result;
  }
  const int num_pairs = static_cast<int>(total);

  // (c)
  Carver pairs;
  const size_t at_keys_a = pairs.Add<unsigned long long>(num_pairs);
  const size_t at_keys_b = pairs.Add<unsigned long long>(num_pairs);
  const size_t at_ids_a = pairs.Add<uint32_t>(num_pairs);
  const size_t at_ids_b = pairs.Add<uint32_t>(num_pairs);
  FLEXGS_RETURN_IF_ERROR(pairs_.Reserve(pairs.bytes()));
  auto* d_keys_a = Carver::Get<unsigned long long>(pairs_, at_keys_a);
  auto* d_ids_a = Carver::Get<uint32_t>(pairs_, at_ids_a);
  EmitKernel<<<Blocks1D(n), kThreads1D, 0, stream_>>>(n, d_offsets, d_rect, d_depth, tiles_x, d_keys_a, d_ids_a);
  FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("EmitKernel");

  // (d) DoubleBuffer: CUB ping-pongs between our two buffers instead of allocating a
  // third copy in its scratch. Only the key bits that can be non-zero are sorted.
  cub::DoubleBuffer<unsigned long long> keys(d_keys_a, Carver::Get<unsigned long long>(pairs_, at_keys_b));
  cub::DoubleBuffer<uint32_t> ids(d_ids_a, Carver::Get<uint32_t>(pairs_, at_ids_b));
  const int end_bit = 32 + BitsFor(tiles);
  size_t sort_bytes = 0;
  FLEXGS_CUDA_RETURN_IF_ERROR(
      cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, keys, ids, num_pairs, 0, end_bit, stream_));
  FLEXGS_RETURN_IF_ERROR(temp_.Reserve(sort_bytes));
  FLEXGS_CUDA_RETURN_IF_ERROR(
      cub::DeviceRadixSort::SortPairs(temp_.data(), sort_bytes, keys, ids, num_pairs, 0, end_bit, stream_));

  // (e)
  Carver img;
  const size_t at_ranges = img.Add<uint2>(tiles);
  const size_t at_color = img.Add<float>(pixels * 3);
  const size_t at_t = img.Add<float>(pixels);
  const size_t at_contrib = img.Add<uint32_t>(pixels);
  FLEXGS_RETURN_IF_ERROR(image_.Reserve(img.bytes()));
  auto* d_ranges = Carver::Get<uint2>(image_, at_ranges);
  auto* d_color = Carver::Get<float>(image_, at_color);
  auto* d_t = Carver::Get<float>(image_, at_t);
  auto* d_contrib = Carver::Get<uint32_t>(image_, at_contrib);
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(d_ranges, 0, tiles * sizeof(uint2), stream_));
  TileRangesKernel<<<Blocks1D(num_pairs), kThreads1D, 0, stream_>>>(num_pairs, keys.Current(), d_ranges);
  FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("TileRangesKernel");

  // (f)
  const dim3 grid(static_cast<unsigned int>(tiles_x), static_cast<unsigned int>(tiles_y));
  const dim3 block(kTile, kTile);
  RenderKernel<<<grid, block, 0, stream_>>>(
      d_ranges, ids.Current(), d_xy, d_conic, d_rgb, width, height,
      make_float3(options.background[0], options.background[1], options.background[2]), d_color, d_t, d_contrib);
  FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("RenderKernel");

  FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(result.color.pixels.data(), d_color, pixels * 3 * sizeof(float),
                                              cudaMemcpyDeviceToHost, stream_));
  if (options.want_aux) {
    result.final_transmittance.resize(pixels);
    result.contributors.resize(pixels);
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(result.final_transmittance.data(), d_t, pixels * sizeof(float),
                                                cudaMemcpyDeviceToHost, stream_));
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(result.contributors.data(), d_contrib, pixels * sizeof(uint32_t),
                                                cudaMemcpyDeviceToHost, stream_));
  }
  // Kernel faults surface here, at the first synchronisation after the launches.
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return result;
}

// Computes the availability answer once; an empty string means available.
std::string ProbeCuda() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // do not leave the error for the next unrelated check
    // The static runtime reports "driver version is insufficient" both for an old
    // driver and for none at all; the driver version (0 = none) tells them apart.
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    cudaGetLastError();
    if (err == cudaErrorInsufficientDriver && driver == 0) return "no CUDA driver is installed";
    if (err == cudaErrorInsufficientDriver) {
      return absl::StrCat("the CUDA driver (", driver / 1000, ".", driver % 1000 / 10,
                          ") is older than the CUDA runtime this binary was built with (", runtime / 1000, ".",
                          runtime % 1000 / 10, ")");
    }
    return absl::StrCat("no usable CUDA device: ", cudaGetErrorString(err));
  }
  if (count == 0) return "no CUDA device found";
  // The binary carries sm_80/sm_90 code (+PTX); an older GPU has no image to run,
  // which cudaFuncGetAttributes reports without launching anything.
  cudaFuncAttributes attributes;
  err = cudaFuncGetAttributes(&attributes, RenderKernel);
  if (err != cudaSuccess) {
    cudaGetLastError();
    int device = 0;
    cudaDeviceProp prop;
    std::memset(&prop, 0, sizeof(prop));
    if (cudaGetDevice(&device) == cudaSuccess && cudaGetDeviceProperties(&prop, device) == cudaSuccess) {
      return absl::StrCat("CUDA device ", device, " (", prop.name, ", compute capability ", prop.major, ".", prop.minor,
                          ") cannot run this binary's kernels: ", cudaGetErrorString(err));
    }
    cudaGetLastError();
    return absl::StrCat("CUDA kernels cannot run on this device: ", cudaGetErrorString(err));
  }
  return std::string();
}

}  // namespace

std::unique_ptr<CudaRasterBackend> NewCudaRasterBackend() { return std::make_unique<CudaRasterizer>(); }

bool CudaRuntimeAvailable(std::string* why) {
  static const std::string* const reason = new std::string(ProbeCuda());  // thread-safe, never freed
  if (why != nullptr) *why = *reason;
  return reason->empty();
}

}  // namespace flexgs
