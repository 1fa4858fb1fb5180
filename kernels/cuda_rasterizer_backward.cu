// CUDA differentiable rasterizer: Forward runs the render pipeline's stages (a)-(f)
// (kernels/cuda_raster_pipeline.cuh) and keeps the frame on the device; Backward adds
//   (g) RenderBackwardKernel    one 16x16 block per tile, one thread per pixel: walks
//                               the tile's sorted list back to front from the last
//                               Gaussian any pixel composited, in batches staged through
//                               shared memory, recovering each transmittance by division
//                               (T_before = T_after / (1 - alpha)), as INRIA and gsplat do
//   (h) GaussianBackwardKernel  one thread per Gaussian: colour, opacity and projection
// The per-pair and per-Gaussian math is core/render/raster_math.h's VJPs, the same functions
// the CPU DifferentiableRasterizer runs, so the two differ only in float rounding: the
// division above, device expf, and summation order.
//
// Reduction: at each step of (g) the 32 lanes of a warp hold gradients for the same
// Gaussian, so the warp sums them with shuffles and one lane issues the atomicAdds (9
// per warp instead of 9 per pixel, as gsplat does). Float atomics make the order of
// the additions, and so the last bits of the gradients, vary from run to run.
#include "kernels/cuda_rasterizer_backward.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cuda_check.cuh"
#include "kernels/cuda_raster_pipeline.cuh"
#include "kernels/device_buffer.cuh"
#include "render/raster_math.h"

namespace flexgs {
namespace {

constexpr int kTile = raster::kTileSize;
constexpr int kBlockPixels = kTile * kTile;
constexpr int kWarps = kBlockPixels / 32;
constexpr int kThreads1D = 256;
constexpr int kIsect = raster::kIsectFloats;
constexpr unsigned kFullWarp = 0xffffffffu;

unsigned int Blocks1D(size_t n) { return static_cast<unsigned int>((n + kThreads1D - 1) / kThreads1D); }

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(kFullWarp, v, offset);
  return v;
}

// (g) Per tile, back to front. g_isect: kIsect floats per Gaussian (zeroed by the caller),
// g_background: 3 floats (zeroed).
__global__ void __launch_bounds__(kBlockPixels)
    RenderBackwardKernel(const uint2* __restrict__ ranges, const uint32_t* __restrict__ ids,
                         const float2* __restrict__ xy, const float4* __restrict__ conic_opacity,
                         const float4* __restrict__ rgb, int width, int height, float3 background,
                         const float* __restrict__ final_t, const uint32_t* __restrict__ last_index,
                         const float* __restrict__ grad_image, float* __restrict__ g_isect,
                         float* __restrict__ g_background) {
  __shared__ uint32_t s_id[kBlockPixels];
  __shared__ float2 s_xy[kBlockPixels];
  __shared__ float4 s_conic_opacity[kBlockPixels];
  __shared__ float4 s_rgb[kBlockPixels];
  __shared__ uint32_t s_end;
  __shared__ float s_background[kWarps][3];

  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int lane = tid & 31;
  const int px = blockIdx.x * kTile + threadIdx.x;
  const int py = blockIdx.y * kTile + threadIdx.y;
  const bool inside = px < width && py < height;
  const uint2 range = ranges[blockIdx.y * gridDim.x + blockIdx.x];

  float T = 1.0f;
  float g[3] = {0.0f, 0.0f, 0.0f};
  uint32_t last = 0;
  if (inside) {
    const size_t pix = static_cast<size_t>(py) * width + px;
    T = final_t[pix];
    g[0] = grad_image[pix * 3 + 0];
    g[1] = grad_image[pix * 3 + 1];
    g[2] = grad_image[pix * 3 + 2];
    last = last_index[pix];
  }
  // C = sum_k c_k alpha_k T_k + T_final * background: summed per warp, then per block,
  // so each block issues 3 atomics (not one per warp on the same 3 addresses).
  const float gb0 = WarpSum(g[0] * T), gb1 = WarpSum(g[1] * T), gb2 = WarpSum(g[2] * T);
  if (lane == 0) {
    s_background[tid / 32][0] = gb0;
    s_background[tid / 32][1] = gb1;
    s_background[tid / 32][2] = gb2;
  }
  float behind[3] = {background.x, background.y, background.z};

  // Start at the last Gaussian any pixel of the tile composited.
  if (tid == 0) s_end = range.x;
  __syncthreads();
  if (last > range.x) atomicMax(&s_end, last);
  if (tid < 3) {
    float sum = 0.0f;
    for (int w = 0; w < kWarps; ++w) sum += s_background[w][tid];
    atomicAdd(&g_background[tid], sum);
  }
  __syncthreads();
  const uint32_t end = s_end;

  for (uint32_t batch_end = end; batch_end > range.x;) {
    const int count = static_cast<int>(min(static_cast<uint32_t>(kBlockPixels), batch_end - range.x));
    __syncthreads();  // every thread is done with the previous batch
    if (tid < count) {
      const uint32_t gid = ids[batch_end - 1 - tid];
      s_id[tid] = gid;
      s_xy[tid] = xy[gid];
      s_conic_opacity[tid] = conic_opacity[gid];
      s_rgb[tid] = rgb[gid];
    }
    __syncthreads();
    // `count` is the same for the whole block, so every lane of a warp reaches the
    // shuffles below together.
    for (int j = 0; j < count; ++j) {
      const uint32_t idx = batch_end - 1 - static_cast<uint32_t>(j);
      raster::Projected p{};
      const float4 co = s_conic_opacity[j];
      p.mean_x = s_xy[j].x;
      p.mean_y = s_xy[j].y;
      p.conic_a = co.x;
      p.conic_b = co.y;
      p.conic_c = co.z;
      p.opacity = co.w;
      bool valid = inside && idx < last;
      float alpha = 0.0f;
      if (valid) {
        // The forward's tests, in its order (RenderKernel).
        const float power = raster::FalloffPower(p, px, py);
        alpha = raster::BlendAlpha(co.w, power);
        valid = !(power > 0.0f) && !(alpha < raster::kAlphaMin);
      }
      float acc[kIsect];
#pragma unroll
      for (int q = 0; q < kIsect; ++q) acc[q] = 0.0f;
      if (valid) {
        T = T / (1.0f - alpha);
        const float4 c = s_rgb[j];
        const float col[3] = {c.x, c.y, c.z};
        raster::BlendStepBackward(p, col, px, py, alpha, T, g, behind, acc);
      }
      if (__any_sync(kFullWarp, valid)) {
#pragma unroll
        for (int q = 0; q < kIsect; ++q) acc[q] = WarpSum(acc[q]);
        if (lane == 0) {
          float* out = g_isect + static_cast<size_t>(s_id[j]) * kIsect;
#pragma unroll
          for (int q = 0; q < kIsect; ++q) {
            if (acc[q] != 0.0f) atomicAdd(&out[q], acc[q]);
          }
        }
      }
    }
    batch_end -= static_cast<uint32_t>(count);
  }
}

// (h) Per Gaussian. The outputs are zeroed by the caller; Gaussians that touched no tile
// keep zero gradients, as on the CPU.
__global__ void __launch_bounds__(kThreads1D)
    GaussianBackwardKernel(int n, const unsigned long long* __restrict__ tiles_touched,
                           const float* __restrict__ positions, const float* __restrict__ log_scales,
                           const float* __restrict__ rotations, const float* __restrict__ opacity_logits,
                           const float* __restrict__ sh_rest, const float* __restrict__ opacity_scale, int sh_degree,
                           int rest_coeffs, const float4* __restrict__ rgb, raster::CameraParams cam,
                           const float* __restrict__ g_isect, float* __restrict__ g_pos,
                           float* __restrict__ g_log_scale, float* __restrict__ g_rot, float* __restrict__ g_logit,
                           float* __restrict__ g_scale, float* __restrict__ g_dc, float* __restrict__ g_rest) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n || tiles_touched[i] == 0) return;
  const size_t s = static_cast<size_t>(i);
  float gs[kIsect];
#pragma unroll
  for (int q = 0; q < kIsect; ++q) gs[q] = g_isect[s * kIsect + q];
  const float4 c = rgb[i];
  const float col[3] = {c.x, c.y, c.z};
  const size_t k = static_cast<size_t>(rest_coeffs);
  raster::GaussianBackward(
      gs, positions + 3 * s, log_scales + 3 * s, rotations + 4 * s, opacity_logits[i],
      opacity_scale != nullptr ? opacity_scale[i] : 1.0f, rest_coeffs > 0 ? sh_rest + s * 3 * k : nullptr, sh_degree,
      rest_coeffs, col, cam, g_pos + 3 * s, g_log_scale + 3 * s, g_rot + 4 * s, g_logit + s,
      opacity_scale != nullptr ? g_scale + s : nullptr, g_dc + 3 * s, rest_coeffs > 0 ? g_rest + s * 3 * k : nullptr);
}

class CudaDifferentiableRasterizer final : public DifferentiableRasterBackend {
 public:
  std::string_view name() const override { return "cuda"; }

  absl::StatusOr<RenderResult> Forward(const GaussianCloud& cloud, const Camera& camera, const RenderOptions& options,
                                       const ForwardInputs& inputs) override {
    ready_ = false;
    cloud_ = nullptr;
    FLEXGS_RETURN_IF_ERROR(cloud.Validate());
    FLEXGS_RETURN_IF_ERROR(camera.Validate());
    FLEXGS_RETURN_IF_ERROR(ValidateOpacityScale(inputs.opacity_scale, cloud.size()));
    FLEXGS_RETURN_IF_ERROR(pipeline_.Init());
    FLEXGS_ASSIGN_OR_RETURN(view_, pipeline_.Upload(cloud));
    const absl::Span<const float> scale = inputs.opacity_scale;
    has_scale_ = !scale.empty();
    if (has_scale_) {
      FLEXGS_RETURN_IF_ERROR(scale_.Reserve(scale.size() * sizeof(float)));
      FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scale_.data(), scale.data(), scale.size() * sizeof(float),
                                                  cudaMemcpyHostToDevice, pipeline_.stream()));
    }
    FLEXGS_ASSIGN_OR_RETURN(
        frame_,
        pipeline_.Run(view_, camera, options, has_scale_ ? reinterpret_cast<const float*>(scale_.data()) : nullptr));
    FLEXGS_ASSIGN_OR_RETURN(RenderResult result, pipeline_.Download(frame_, options));
    cloud_ = &cloud;
    cloud_size_ = cloud.size();
    cloud_sh_degree_ = cloud.sh_degree;
    background_ = options.background;
    ready_ = true;
    return result;
  }

  absl::Status Backward(absl::Span<const float> grad_image, CloudGradients* grads) override {
    if (!ready_) return absl::FailedPreconditionError("Backward needs a successful Forward first");
    if (grads == nullptr) return absl::InvalidArgumentError("grads must not be null");
    const DeviceRasterFrame& f = frame_;
    const size_t pixels = static_cast<size_t>(f.width) * f.height;
    FLEXGS_RETURN_IF_ERROR(ValidateImageGradient(grad_image, f.width, f.height));
    const GaussianCloud& cloud = *cloud_;
    if (cloud.size() != cloud_size_ || cloud.sh_degree != cloud_sh_degree_) {
      return absl::FailedPreconditionError("the cloud changed between Forward and Backward");
    }
    grads->ResizeLike(cloud, has_scale_);
    if (f.pairs == 0) {
      // Nothing was composited: every pixel shows the background at T = 1.
      double sum[3] = {0.0, 0.0, 0.0};
      for (size_t p = 0; p < pixels; ++p)
        for (int ch = 0; ch < 3; ++ch) sum[ch] += grad_image[p * 3 + ch];
      for (int ch = 0; ch < 3; ++ch) grads->background[ch] = static_cast<float>(sum[ch]);
      return absl::OkStatus();
    }
    const size_t n = cloud.size();
    const int k = cloud.rest_coeffs();
    const cudaStream_t stream = pipeline_.stream();

    // Inputs and zeroed accumulators/outputs, in one allocation.
    Carver layout;
    const size_t at_grad = layout.Add<float>(pixels * 3);
    const size_t at_isect = layout.Add<float>(n * kIsect);
    const size_t at_bg = layout.Add<float>(3);
    const size_t at_pos = layout.Add<float>(n * 3);
    const size_t at_ls = layout.Add<float>(n * 3);
    const size_t at_rot = layout.Add<float>(n * 4);
    const size_t at_logit = layout.Add<float>(n);
    const size_t at_scale = layout.Add<float>(has_scale_ ? n : 0);
    const size_t at_dc = layout.Add<float>(n * 3);
    const size_t at_rest = layout.Add<float>(n * 3 * static_cast<size_t>(k));
    const size_t bytes = layout.bytes();
    FLEXGS_RETURN_IF_ERROR(work_.Reserve(bytes));
    auto* d_grad = Carver::Get<float>(work_, at_grad);
    auto* d_isect = Carver::Get<float>(work_, at_isect);
    auto* d_bg = Carver::Get<float>(work_, at_bg);
    FLEXGS_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(d_grad, grad_image.data(), pixels * 3 * sizeof(float), cudaMemcpyHostToDevice, stream));
    // Accumulators and outputs (everything after the image gradient) start at 0.
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(work_.data() + at_isect, 0, bytes - at_isect, stream));

    // (g)
    const dim3 grid(static_cast<unsigned int>(f.tiles_x), static_cast<unsigned int>(f.tiles_y));
    const dim3 block(kTile, kTile);
    RenderBackwardKernel<<<grid, block, 0, stream>>>(
        f.ranges, f.sorted_ids, f.xy, f.conic_opacity, f.rgb, f.width, f.height,
        make_float3(background_[0], background_[1], background_[2]), f.final_t, f.last_index, d_grad, d_isect, d_bg);
    FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("RenderBackwardKernel");

    // (h)
    auto* d_pos = Carver::Get<float>(work_, at_pos);
    auto* d_ls = Carver::Get<float>(work_, at_ls);
    auto* d_rot = Carver::Get<float>(work_, at_rot);
    auto* d_logit = Carver::Get<float>(work_, at_logit);
    auto* d_scale = Carver::Get<float>(work_, at_scale);
    auto* d_dc = Carver::Get<float>(work_, at_dc);
    auto* d_rest = Carver::Get<float>(work_, at_rest);
    GaussianBackwardKernel<<<Blocks1D(n), kThreads1D, 0, stream>>>(
        static_cast<int>(n), f.tiles_touched, view_.positions, view_.log_scales, view_.rotations, view_.opacity_logits,
        view_.sh_rest, has_scale_ ? reinterpret_cast<const float*>(scale_.data()) : nullptr, f.sh_degree, k, f.rgb,
        f.cam, d_isect, d_pos, d_ls, d_rot, d_logit, d_scale, d_dc, d_rest);
    FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("GaussianBackwardKernel");

    float bg[3];
    const std::pair<const float*, std::vector<float>*> downloads[] = {
        {d_pos, &grads->positions},        {d_ls, &grads->log_scales}, {d_rot, &grads->rotations},
        {d_logit, &grads->opacity_logits}, {d_dc, &grads->sh_dc},      {d_rest, &grads->sh_rest},
        {d_scale, &grads->opacity_scale}};
    for (const auto& [device, host] : downloads) {
      if (host->empty()) continue;
      FLEXGS_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(host->data(), device, host->size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
    }
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(bg, d_bg, sizeof(bg), cudaMemcpyDeviceToHost, stream));
    // Kernel faults surface here.
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    for (int ch = 0; ch < 3; ++ch) grads->background[ch] = bg[ch];
    return absl::OkStatus();
  }

 private:
  CudaRasterPipeline pipeline_;
  DeviceBuffer scale_;  // opacity_scale of the last Forward
  DeviceBuffer work_;   // Backward's inputs, accumulators and outputs
  // State of the last successful Forward.
  bool ready_ = false;
  bool has_scale_ = false;
  const GaussianCloud* cloud_ = nullptr;
  size_t cloud_size_ = 0;
  int cloud_sh_degree_ = 0;
  std::array<float, 3> background_{};
  DeviceCloudView view_;
  DeviceRasterFrame frame_;
};

}  // namespace

std::unique_ptr<DifferentiableRasterBackend> NewCudaDifferentiableRasterizer() {
  return std::make_unique<CudaDifferentiableRasterizer>();
}

}  // namespace flexgs
