// CudaRasterPipeline (kernels/cuda_raster_pipeline.cuh): stages (a)-(f) of the CUDA
// rasterizer.
#include "kernels/cuda_raster_pipeline.cuh"

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cuda_check.cuh"
#include "render/raster_math.h"

namespace flexgs {
namespace {

constexpr int kTile = raster::kTileSize;
constexpr int kBlockPixels = kTile * kTile;  // render threads per block == Gaussians per batch
constexpr int kThreads1D = 256;              // threads per block for the per-item kernels

unsigned int Blocks1D(size_t n) { return static_cast<unsigned int>((n + kThreads1D - 1) / kThreads1D); }

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
                  const float* __restrict__ sh_dc, const float* __restrict__ sh_rest,
                  const float* __restrict__ opacity_scale, int sh_degree, int rest_coeffs, raster::CameraParams cam,
                  raster::RadiusMode mode, int tiles_x, int tiles_y, float2* __restrict__ xy,
                  float4* __restrict__ conic_opacity, float4* __restrict__ rgb, float* __restrict__ depth,
                  int4* __restrict__ rect, unsigned long long* __restrict__ tiles_touched,
                  unsigned int* __restrict__ visible_count) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  bool visible = false;
  if (i < n) {
    raster::Projected p;
    unsigned long long count = 0;
    if (raster::ProjectGaussian(positions + 3 * static_cast<size_t>(i), log_scales + 3 * static_cast<size_t>(i),
                                rotations + 4 * static_cast<size_t>(i), opacity_logits[i], cam, mode, &p,
                                opacity_scale != nullptr ? opacity_scale[i] : 1.0f)) {
      int x0, y0, x1, y1;
      raster::TileRect(p, tiles_x, tiles_y, &x0, &y0, &x1, &y1);
      count = static_cast<unsigned long long>(x1 - x0) * static_cast<unsigned long long>(y1 - y0);
      // "Visible" as the CPU counts it: projected and touching at least one tile
      // (a footprint exactly on the image's far edge gets an empty rect).
      visible = count > 0;
      const float* pos = positions + 3 * static_cast<size_t>(i);
      float c[3];
      raster::EvalShColor(sh_degree, sh_dc + 3 * static_cast<size_t>(i),
                          rest_coeffs > 0 ? sh_rest + static_cast<size_t>(i) * 3 * rest_coeffs : nullptr, rest_coeffs,
                          pos[0] - cam.campos[0], pos[1] - cam.campos[1], pos[2] - cam.campos[2], c);
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
                 uint32_t* __restrict__ out_contributors, uint32_t* __restrict__ out_last) {
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
  uint32_t last = 0;  // 1 + sorted position of the last composited Gaussian

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
      const float alpha = raster::BlendAlpha(co.w, power);
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
      last = base + static_cast<uint32_t>(j) + 1;
    }
  }

  if (inside) {
    const size_t pix = static_cast<size_t>(py) * width + px;
    out_color[pix * 3 + 0] = C[0] + T * background.x;
    out_color[pix * 3 + 1] = C[1] + T * background.y;
    out_color[pix * 3 + 2] = C[2] + T * background.z;
    out_transmittance[pix] = T;
    out_contributors[pix] = contributors;
    out_last[pix] = last;
  }
}

// Smallest b with 2^b >= count: the bits the tile id needs in the sort key.
int BitsFor(uint64_t count) {
  int bits = 0;
  while (bits < 32 && (uint64_t{1} << bits) < count) ++bits;
  return bits;
}

}  // namespace

const void* RasterProbeKernel() { return reinterpret_cast<const void*>(&RenderKernel); }

CudaRasterPipeline::~CudaRasterPipeline() {
  // Teardown errors (e.g. the runtime already unloaded at exit) cannot be reported.
  if (stream_ != nullptr) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  if (host_counters_ != nullptr) cudaFreeHost(host_counters_);
}

absl::Status CudaRasterPipeline::Init() {
  // A stream of our own keeps renders from serialising with unrelated work on the
  // legacy default stream. Each piece is retried on the next call if it failed.
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

absl::StatusOr<DeviceCloudView> CudaRasterPipeline::Upload(const GaussianCloud& cloud) {
  DeviceCloudView view;
  view.count = cloud.size();
  view.sh_degree = cloud.sh_degree;
  if (cloud.empty()) return view;
  // One copy per attribute into one reused allocation.
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
  return view;
}

absl::StatusOr<DeviceRasterFrame> CudaRasterPipeline::Run(const DeviceCloudView& cloud, const Camera& camera,
                                                          const RenderOptions& options, const float* opacity_scale) {
  if (cloud.count > static_cast<size_t>(INT_MAX)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the CUDA rasterizer handles at most ", INT_MAX, " Gaussians, got ", cloud.count));
  }
  DeviceRasterFrame frame;
  const int n = static_cast<int>(cloud.count);
  frame.count = n;
  frame.width = camera.width;
  frame.height = camera.height;
  frame.tiles_x = (camera.width + kTile - 1) / kTile;
  frame.tiles_y = (camera.height + kTile - 1) / kTile;
  frame.cam = ToCameraParams(camera, options.near_plane);
  frame.sh_degree = std::max(0, std::min(options.max_sh_degree, cloud.sh_degree));
  if (n == 0) return frame;
  const int width = frame.width, height = frame.height, tiles_x = frame.tiles_x, tiles_y = frame.tiles_y;
  const size_t tiles = static_cast<size_t>(tiles_x) * tiles_y;
  const size_t pixels = static_cast<size_t>(width) * height;
  const int rest_coeffs = ShRestCoeffs(cloud.sh_degree);

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
  frame.xy = d_xy;
  frame.conic_opacity = d_conic;
  frame.rgb = d_rgb;
  frame.tiles_touched = d_counts;

  // (a)
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(d_visible, 0, sizeof(unsigned int), stream_));
  ProjectKernel<<<Blocks1D(n), kThreads1D, 0, stream_>>>(
      n, cloud.positions, cloud.log_scales, cloud.rotations, cloud.opacity_logits, cloud.sh_dc, cloud.sh_rest,
      opacity_scale, frame.sh_degree, rest_coeffs, frame.cam, options.radius_mode, tiles_x, tiles_y, d_xy, d_conic,
      d_rgb, d_depth, d_rect, d_counts, d_visible);
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
  frame.visible = host_counters_->visible;
  if (total > static_cast<unsigned long long>(INT_MAX)) {
    // CUB's item counts and the uint32 tile ranges are 32-bit.
    return absl::ResourceExhaustedError(
        absl::StrCat("too many Gaussian-tile intersections for the CUDA rasterizer: ", total, " > ", INT_MAX));
  }
  if (total == 0) return frame;
  const int num_pairs = static_cast<int>(total);
  frame.pairs = num_pairs;

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
  const size_t at_last = img.Add<uint32_t>(pixels);
  FLEXGS_RETURN_IF_ERROR(image_.Reserve(img.bytes()));
  auto* d_ranges = Carver::Get<uint2>(image_, at_ranges);
  auto* d_color = Carver::Get<float>(image_, at_color);
  auto* d_t = Carver::Get<float>(image_, at_t);
  auto* d_contrib = Carver::Get<uint32_t>(image_, at_contrib);
  auto* d_last = Carver::Get<uint32_t>(image_, at_last);
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(d_ranges, 0, tiles * sizeof(uint2), stream_));
  TileRangesKernel<<<Blocks1D(num_pairs), kThreads1D, 0, stream_>>>(num_pairs, keys.Current(), d_ranges);
  FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("TileRangesKernel");

  // (f)
  const dim3 grid(static_cast<unsigned int>(tiles_x), static_cast<unsigned int>(tiles_y));
  const dim3 block(kTile, kTile);
  RenderKernel<<<grid, block, 0, stream_>>>(
      d_ranges, ids.Current(), d_xy, d_conic, d_rgb, width, height,
      make_float3(options.background[0], options.background[1], options.background[2]), d_color, d_t, d_contrib,
      d_last);
  FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("RenderKernel");
  frame.sorted_ids = ids.Current();
  frame.ranges = d_ranges;
  frame.color = d_color;
  frame.final_t = d_t;
  frame.contributors = d_contrib;
  frame.last_index = d_last;
  return frame;
}

absl::StatusOr<RenderResult> CudaRasterPipeline::Download(const DeviceRasterFrame& frame,
                                                          const RenderOptions& options) {
  const size_t pixels = static_cast<size_t>(frame.width) * frame.height;
  RenderResult result;
  result.color = Image(frame.width, frame.height, 3);
  result.visible = frame.visible;
  result.intersections = static_cast<size_t>(frame.pairs);
  if (frame.pairs == 0) {
    for (size_t p = 0; p < pixels; ++p)
      for (int c = 0; c < 3; ++c) result.color.pixels[p * 3 + c] = options.background[c];
    if (options.want_aux) {
      result.final_transmittance.assign(pixels, 1.0f);
      result.contributors.assign(pixels, 0u);
    }
    // Stages that did run (an upload, a projection) may still be in flight.
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return result;
  }
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(result.color.pixels.data(), frame.color, pixels * 3 * sizeof(float),
                                              cudaMemcpyDeviceToHost, stream_));
  if (options.want_aux) {
    result.final_transmittance.resize(pixels);
    result.contributors.resize(pixels);
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(result.final_transmittance.data(), frame.final_t,
                                                pixels * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(result.contributors.data(), frame.contributors,
                                                pixels * sizeof(uint32_t), cudaMemcpyDeviceToHost, stream_));
  }
  // Kernel faults surface here, at the first synchronisation after the launches.
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return result;
}

}  // namespace flexgs
