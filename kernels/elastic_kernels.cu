// CUDA GsNet and transform field: the GPU twins of core/elastic/gsnet.cc and
// core/elastic/transform_field.cc (contracts in kernels/elastic_kernels.h).
//
// Stages, one kernel each:
//   GsNetKernel         one thread per Gaussian: activations, three branch MLPs and the
//                       head; the ratio branch is a per-call constant folded into the
//                       head bias on the host, exactly as the CPU path does.
//   FieldFeatureKernel  one thread per (Gaussian, feature): the product over the six
//                       planes of one channel of one level, written feature-major so
//                       the MLP kernel's loads are coalesced.
//   FieldMlpKernel      one thread per Gaussian: trunk and the three heads with the
//                       hidden activations in registers (templated on an upper bound
//                       of the width so the arrays are not spilled to local memory).
// Weights are read with warp-uniform addresses (every thread of a warp reads the same
// weight at the same time), which the L1 broadcasts; they are small (20 KB for
// GsNet, 65 KB for the field MLP) and stay cached.
//
// The field's input normalisation and axis sampling are the CPU's own functions
// (core/elastic/field_input.h); every other per-Gaussian formula (quaternion rule, plane
// product order) mirrors the CPU code line by line. The remaining differences are float
// summation order and FMA contraction, covered by tests/unit/kernels/elastic_cuda_test.cc's
// tolerance.
#include "kernels/elastic_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "elastic/field_input.h"
#include "kernels/cuda_check.cuh"
#include "kernels/cuda_rasterizer.h"
#include "kernels/device_buffer.cuh"

namespace flexgs {
namespace {

constexpr int kThreads = 256;
constexpr int kMlpThreads = 128;  // the MLP kernel uses many registers per thread
constexpr int kMaxLevels = 8;     // TransformFieldConfig::Validate's limit
constexpr int kHidden = GsNetWeights::kHidden;
constexpr int kConcat = 4 * kHidden;
constexpr float kMinQuatNorm = 1e-12f;  // core/render/raster_math.h's threshold
// Gaussians per field launch: bounds the feature buffer (F floats per Gaussian).
constexpr size_t kFieldChunk = size_t{1} << 20;

unsigned int Blocks(size_t n, int threads) { return static_cast<unsigned int>((n + threads - 1) / threads); }

// Grow-only device array of floats: a typed view of the one grow-only allocation.
class DeviceFloats {
 public:
  absl::Status Reserve(size_t count) { return buffer_.Reserve(std::max<size_t>(count, 1) * sizeof(float)); }
  float* data() const { return reinterpret_cast<float*>(buffer_.data()); }

 private:
  DeviceBuffer buffer_;
};

absl::Status Upload(DeviceFloats& dst, absl::Span<const float> src, cudaStream_t stream) {
  FLEXGS_RETURN_IF_ERROR(dst.Reserve(src.size()));
  if (!src.empty()) {
    FLEXGS_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst.data(), src.data(), src.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// GsNet

struct GsNetDevice {
  const float* w1[3];
  const float* b1[3];
  const float* w2[3];
  const float* b2[3];
  const float* head;  // [2, 128]
};

__global__ void __launch_bounds__(kThreads)
    GsNetKernel(size_t n, const float* __restrict__ positions, const float* __restrict__ log_scales,
                const float* __restrict__ rotations, GsNetDevice net, float base0, float base1,
                float* __restrict__ delta) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x[3][4];
  for (int d = 0; d < 3; ++d) {
    x[0][d] = positions[3 * i + d];
    x[2][d] = expf(log_scales[3 * i + d]);
  }
  const float* q = rotations + 4 * i;
  const float qn = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  if (qn > kMinQuatNorm && isfinite(qn)) {
    for (int d = 0; d < 4; ++d) x[1][d] = q[d] / qn;
  } else {
    x[1][0] = 1.0f;
    x[1][1] = x[1][2] = x[1][3] = 0.0f;
  }

  float l0 = base0, l1 = base1;
#pragma unroll
  for (int b = 0; b < 3; ++b) {
    const int d_in = b == 1 ? 4 : 3;  // GsNetWeights::kInputs (not usable in device code)
    const float* __restrict__ w1 = net.w1[b];
    const float* __restrict__ b1 = net.b1[b];
    const float* __restrict__ w2 = net.w2[b];
    const float* __restrict__ b2 = net.b2[b];
    float h1[kHidden];
#pragma unroll
    for (int o = 0; o < kHidden; ++o) {
      float acc = b1[o];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (k < d_in) acc += w1[o * d_in + k] * x[b][k];
      }
      h1[o] = fmaxf(acc, 0.0f);
    }
#pragma unroll 4
    for (int o = 0; o < kHidden; ++o) {
      float acc = b2[o];
#pragma unroll
      for (int k = 0; k < kHidden; ++k) acc += w2[o * kHidden + k] * h1[k];
      acc = fmaxf(acc, 0.0f);
      l0 += net.head[b * kHidden + o] * acc;
      l1 += net.head[kConcat + b * kHidden + o] * acc;
    }
  }
  delta[i] = l1 - l0;
}

// ---------------------------------------------------------------------------
// Transform field

// Positions and the ratio become lookups exactly as on the CPU: FieldInputAxes, FieldCoord,
// FieldRatioCoord, SampleAxis and Bilinear are core/elastic/field_input.h's.

struct FieldPlanes {
  int levels = 0;
  int channels = 0;
  int spatial_res[kMaxLevels] = {};
  int ratio_res = 0;
  unsigned long long offset[kMaxLevels][6] = {};  // float offset of each plane in the buffer
  AxisSample ratio[kMaxLevels] = {};              // the ratio axis, sampled once per call
  FieldAxes axes = {};                            // the position normalisation, per call
};

// kPlaneAxes (core/elastic/transform_field.h) as arithmetic, so that after unrolling the plane
// loop the axis indices are compile-time constants and axis[] stays in registers.
__host__ __device__ constexpr int PlaneAxisA(int p) { return p < 3 ? 0 : (p < 5 ? 1 : 2); }
__host__ __device__ constexpr int PlaneAxisB(int p) { return p == 0 ? 1 : (p == 1 || p == 3) ? 2 : 3; }
constexpr bool PlaneAxesMatchTheHeader() {
  for (int p = 0; p < 6; ++p) {
    if (PlaneAxisA(p) != kPlaneAxes[p][0] || PlaneAxisB(p) != kPlaneAxes[p][1]) return false;
  }
  return true;
}
static_assert(PlaneAxesMatchTheHeader(), "PlaneAxisA/B must equal kPlaneAxes");

// featT[f * m + g] for Gaussian g < m and feature f = level * C + channel.
__global__ void __launch_bounds__(kThreads)
    FieldFeatureKernel(size_t m, const float* __restrict__ positions, const float* __restrict__ planes,
                       FieldPlanes desc, float* __restrict__ featT) {
  const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t features = static_cast<size_t>(desc.levels) * desc.channels;
  if (idx >= m * features) return;
  const size_t g = idx % m;
  const int f = static_cast<int>(idx / m);
  const int l = f / desc.channels;
  const int c = f % desc.channels;

  const int sres = desc.spatial_res[l];
  AxisSample axis[4];
  for (int d = 0; d < 3; ++d) {
    axis[d] = SampleAxis(FieldCoord(desc.axes, d, positions[3 * g + d]), sres);
  }
  axis[3] = desc.ratio[l];

  float prod = 1.0f;
#pragma unroll
  for (int p = 0; p < 6; ++p) {
    const int pa = PlaneAxisA(p), pb = PlaneAxisB(p);
    const AxisSample a = axis[pa];
    const AxisSample b = axis[pb];
    const int ra = pa == 3 ? desc.ratio_res : sres;
    const int rb = pb == 3 ? desc.ratio_res : sres;
    const float* __restrict__ t = planes + desc.offset[l][p] + static_cast<size_t>(c) * ra * rb;
    const BilinearWeights w = Bilinear(a, b);
    const float v = t[b.i0 * ra + a.i0] * w.w00 + t[b.i0 * ra + a.i1] * w.w01 + t[b.i1 * ra + a.i0] * w.w10 +
                    t[b.i1 * ra + a.i1] * w.w11;
    prod = p == 0 ? v : prod * v;
  }
  featT[static_cast<size_t>(f) * m + g] = prod;
}

struct FieldMlp {
  const float* wt;  // [hidden, features]
  const float* bt;
  const float* w1[3];  // [hidden, hidden]
  const float* b1[3];
  const float* w2[3];  // [k, hidden]
  const float* b2[3];
  int features;
  int hidden;
};

template <int kMaxH>
__global__ void __launch_bounds__(kMlpThreads)
    FieldMlpKernel(size_t m, const float* __restrict__ featT, FieldMlp mlp, float* __restrict__ deltas) {
  const size_t g = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= m) return;
  const int H = mlp.hidden, F = mlp.features;
  const float* __restrict__ wt = mlp.wt;

  float h[kMaxH];
#pragma unroll
  for (int o = 0; o < kMaxH; ++o) h[o] = o < H ? mlp.bt[o] : 0.0f;
  for (int i = 0; i < F; ++i) {
    const float f = featT[static_cast<size_t>(i) * m + g];
#pragma unroll
    for (int o = 0; o < kMaxH; ++o) {
      if (o < H) h[o] += wt[o * F + i] * f;
    }
  }
  // Every head starts with a ReLU of the trunk output.
#pragma unroll
  for (int o = 0; o < kMaxH; ++o) h[o] = fmaxf(h[o], 0.0f);

  float out[kDeltaStride];
#pragma unroll
  for (int hd = 0; hd < 3; ++hd) {
    const int k_out = hd == 2 ? 4 : 3;  // TransformFieldWeights::kHeadOutputs
    const int off = 3 * hd;             // 0, 3, 6
    const float* __restrict__ w1 = mlp.w1[hd];
    const float* __restrict__ b1 = mlp.b1[hd];
    const float* __restrict__ w2 = mlp.w2[hd];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (k < k_out) out[off + k] = mlp.b2[hd][k];
    }
    for (int o = 0; o < H; ++o) {
      float a = b1[o];
      const float* __restrict__ row = w1 + o * H;
#pragma unroll
      for (int i = 0; i < kMaxH; ++i) {
        if (i < H) a += row[i] * h[i];
      }
      a = fmaxf(a, 0.0f);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (k < k_out) out[off + k] += w2[k * H + o] * a;
      }
    }
  }
  float* d = deltas + g * kDeltaStride;
#pragma unroll
  for (int k = 0; k < kDeltaStride; ++k) d[k] = out[k];
}

}  // namespace

// ---------------------------------------------------------------------------
// CudaElasticEvaluator

struct CudaElasticEvaluator::Impl {
  cudaStream_t stream = nullptr;

  bool has_gsnet = false;
  GsNetWeights gsnet;  // host copy: the ratio branch runs on the host
  DeviceFloats gsnet_weights;
  GsNetDevice gsnet_dev{};

  bool has_cloud = false;
  size_t cloud_n = 0;
  DeviceFloats positions, log_scales, rotations, scores;

  bool has_field = false;
  TransformFieldConfig field_config;
  DeviceFloats planes, mlp_weights;
  FieldPlanes planes_desc;
  FieldMlp mlp_dev{};
  DeviceFloats field_positions, features, field_deltas;

  ~Impl() {
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  absl::Status Sync() {
    FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    return absl::OkStatus();
  }
};

CudaElasticEvaluator::CudaElasticEvaluator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaElasticEvaluator::~CudaElasticEvaluator() = default;

absl::StatusOr<std::unique_ptr<CudaElasticEvaluator>> CudaElasticEvaluator::Create() {
  std::string why;
  if (!CudaRuntimeAvailable(&why)) {
    return absl::FailedPreconditionError(absl::StrCat("CUDA is unavailable: ", why));
  }
  auto impl = std::make_unique<Impl>();
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  return std::unique_ptr<CudaElasticEvaluator>(new CudaElasticEvaluator(std::move(impl)));
}

absl::Status CudaElasticEvaluator::SetGsNet(const GsNetWeights& net) {
  FLEXGS_RETURN_IF_ERROR(net.Validate());
  Impl& s = *impl_;
  s.has_gsnet = false;
  // Layout: per spatial branch w1, b1, w2, b2; then the head.
  std::vector<float> packed;
  size_t at[3][4];
  for (int b = 0; b < 3; ++b) {
    const DenseLayer* parts[2] = {&net.fc1[b], &net.fc2[b]};
    for (int k = 0; k < 2; ++k) {
      at[b][2 * k] = packed.size();
      packed.insert(packed.end(), parts[k]->weight.begin(), parts[k]->weight.end());
      at[b][2 * k + 1] = packed.size();
      packed.insert(packed.end(), parts[k]->bias.begin(), parts[k]->bias.end());
    }
  }
  const size_t head_at = packed.size();
  packed.insert(packed.end(), net.head.weight.begin(), net.head.weight.end());
  FLEXGS_RETURN_IF_ERROR(Upload(s.gsnet_weights, packed, s.stream));
  FLEXGS_RETURN_IF_ERROR(s.Sync());
  const float* base = s.gsnet_weights.data();
  for (int b = 0; b < 3; ++b) {
    s.gsnet_dev.w1[b] = base + at[b][0];
    s.gsnet_dev.b1[b] = base + at[b][1];
    s.gsnet_dev.w2[b] = base + at[b][2];
    s.gsnet_dev.b2[b] = base + at[b][3];
  }
  s.gsnet_dev.head = base + head_at;
  s.gsnet = net;
  s.has_gsnet = true;
  return absl::OkStatus();
}

absl::Status CudaElasticEvaluator::SetCloud(const GaussianCloud& cloud) {
  Impl& s = *impl_;
  s.has_cloud = false;
  const size_t n = cloud.size();
  if (cloud.positions.size() != 3 * n || cloud.log_scales.size() != 3 * n || cloud.rotations.size() != 4 * n) {
    return absl::InvalidArgumentError("cloud attribute arrays do not match cloud.size()");
  }
  FLEXGS_RETURN_IF_ERROR(Upload(s.positions, cloud.positions, s.stream));
  FLEXGS_RETURN_IF_ERROR(Upload(s.log_scales, cloud.log_scales, s.stream));
  FLEXGS_RETURN_IF_ERROR(Upload(s.rotations, cloud.rotations, s.stream));
  FLEXGS_RETURN_IF_ERROR(s.scores.Reserve(n));
  FLEXGS_RETURN_IF_ERROR(s.Sync());
  s.cloud_n = n;
  s.has_cloud = true;
  return absl::OkStatus();
}

absl::Status CudaElasticEvaluator::Scores(float ratio, absl::Span<float> delta) {
  Impl& s = *impl_;
  if (!s.has_gsnet) return absl::FailedPreconditionError("Scores: no GsNet uploaded (call SetGsNet)");
  if (!s.has_cloud) return absl::FailedPreconditionError("Scores: no cloud uploaded (call SetCloud)");
  if (delta.size() != s.cloud_n) {
    return absl::InvalidArgumentError(
        absl::StrCat("Scores: delta has ", delta.size(), " entries, the resident cloud ", s.cloud_n));
  }
  if (s.cloud_n == 0) return absl::OkStatus();

  // The ratio branch, folded into the head bias (same code as the CPU path).
  const GsNetWeights& net = s.gsnet;
  float r1[kHidden], r2[kHidden];
  net.fc1[3].Forward(&ratio, r1);
  for (float& v : r1) v = std::max(v, 0.0f);
  net.fc2[3].Forward(r1, r2);
  for (float& v : r2) v = std::max(v, 0.0f);
  float base[2];
  for (int k = 0; k < 2; ++k) {
    const float* w = &net.head.weight[static_cast<size_t>(k) * kConcat + 3 * kHidden];
    float acc = net.head.bias[k];
    for (int j = 0; j < kHidden; ++j) acc += w[j] * r2[j];
    base[k] = acc;
  }

  GsNetKernel<<<Blocks(s.cloud_n, kThreads), kThreads, 0, s.stream>>>(s.cloud_n, s.positions.data(),
                                                                      s.log_scales.data(), s.rotations.data(),
                                                                      s.gsnet_dev, base[0], base[1], s.scores.data());
  FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("GsNetKernel");
  FLEXGS_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(delta.data(), s.scores.data(), s.cloud_n * sizeof(float), cudaMemcpyDeviceToHost, s.stream));
  return s.Sync();
}

absl::Status CudaElasticEvaluator::Scores(const GaussianCloud& cloud, float ratio, absl::Span<float> delta) {
  FLEXGS_RETURN_IF_ERROR(SetCloud(cloud));
  return Scores(ratio, delta);
}

absl::Status CudaElasticEvaluator::SetField(const TransformFieldWeights& field) {
  FLEXGS_RETURN_IF_ERROR(field.Validate());
  Impl& s = *impl_;
  s.has_field = false;
  const TransformFieldConfig& cfg = field.config;
  const int levels = static_cast<int>(field.levels.size());
  if (levels > kMaxLevels) {
    return absl::UnimplementedError(absl::StrCat("CUDA field supports at most ", kMaxLevels, " levels"));
  }

  FieldPlanes desc;
  desc.levels = levels;
  desc.channels = cfg.channels;
  desc.ratio_res = cfg.ratio_resolution;
  size_t total = 0;
  for (int l = 0; l < levels; ++l) {
    desc.spatial_res[l] = field.levels[l].spatial_resolution;
    for (int p = 0; p < 6; ++p) {
      desc.offset[l][p] = total;
      total += field.levels[l].planes[p].size();
    }
  }
  FLEXGS_RETURN_IF_ERROR(s.planes.Reserve(total));
  for (int l = 0; l < levels; ++l) {
    for (int p = 0; p < 6; ++p) {
      const std::vector<float>& plane = field.levels[l].planes[p];
      FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(s.planes.data() + desc.offset[l][p], plane.data(),
                                                  plane.size() * sizeof(float), cudaMemcpyHostToDevice, s.stream));
    }
  }

  std::vector<float> packed;
  auto append = [&packed](const std::vector<float>& v) {
    const size_t at = packed.size();
    packed.insert(packed.end(), v.begin(), v.end());
    return at;
  };
  const size_t wt = append(field.trunk.weight), bt = append(field.trunk.bias);
  size_t w1[3], b1[3], w2[3], b2[3];
  for (int h = 0; h < 3; ++h) {
    w1[h] = append(field.fc1[h].weight);
    b1[h] = append(field.fc1[h].bias);
    w2[h] = append(field.fc2[h].weight);
    b2[h] = append(field.fc2[h].bias);
  }
  FLEXGS_RETURN_IF_ERROR(Upload(s.mlp_weights, packed, s.stream));
  FLEXGS_RETURN_IF_ERROR(s.Sync());

  const float* base = s.mlp_weights.data();
  s.mlp_dev.wt = base + wt;
  s.mlp_dev.bt = base + bt;
  for (int h = 0; h < 3; ++h) {
    s.mlp_dev.w1[h] = base + w1[h];
    s.mlp_dev.b1[h] = base + b1[h];
    s.mlp_dev.w2[h] = base + w2[h];
    s.mlp_dev.b2[h] = base + b2[h];
  }
  s.mlp_dev.features = cfg.feature_dim();
  s.mlp_dev.hidden = cfg.hidden;
  s.planes_desc = desc;
  s.field_config = cfg;
  s.has_field = true;
  return absl::OkStatus();
}

absl::Status CudaElasticEvaluator::EvalField(const FieldNormalization& norm, absl::Span<const float> positions,
                                             float ratio, absl::Span<float> deltas) {
  Impl& s = *impl_;
  if (!s.has_field) return absl::FailedPreconditionError("EvalField: no field uploaded (call SetField)");
  if (positions.size() % 3 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("EvalField: ", positions.size(), " position values, not xyz triples"));
  }
  const size_t n = positions.size() / 3;
  if (deltas.size() != n * kDeltaStride) {
    return absl::InvalidArgumentError(
        absl::StrCat("EvalField: deltas has ", deltas.size(), " values, expected ", n * kDeltaStride));
  }
  if (n == 0) return absl::OkStatus();

  // Per-call constants, computed exactly like the CPU path.
  FieldPlanes desc = s.planes_desc;
  desc.axes = FieldInputAxes(norm.aabb_min.data(), norm.aabb_max.data());
  const float ratio_coord = FieldRatioCoord(ratio, norm.ratio_scale, norm.ratio_offset);
  for (int l = 0; l < desc.levels; ++l) desc.ratio[l] = SampleAxis(ratio_coord, desc.ratio_res);

  const size_t features = static_cast<size_t>(s.field_config.feature_dim());
  const size_t chunk = std::min(n, kFieldChunk);
  FLEXGS_RETURN_IF_ERROR(Upload(s.field_positions, positions, s.stream));
  FLEXGS_RETURN_IF_ERROR(s.features.Reserve(chunk * features));
  FLEXGS_RETURN_IF_ERROR(s.field_deltas.Reserve(n * kDeltaStride));
  const int hidden = s.field_config.hidden;
  for (size_t begin = 0; begin < n; begin += chunk) {
    const size_t m = std::min(chunk, n - begin);
    FieldFeatureKernel<<<Blocks(m * features, kThreads), kThreads, 0, s.stream>>>(
        m, s.field_positions.data() + 3 * begin, s.planes.data(), desc, s.features.data());
    FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("FieldFeatureKernel");
    float* out = s.field_deltas.data() + begin * kDeltaStride;
    const unsigned int blocks = Blocks(m, kMlpThreads);
    if (hidden <= 32) {
      FieldMlpKernel<32><<<blocks, kMlpThreads, 0, s.stream>>>(m, s.features.data(), s.mlp_dev, out);
    } else if (hidden <= 64) {
      FieldMlpKernel<64><<<blocks, kMlpThreads, 0, s.stream>>>(m, s.features.data(), s.mlp_dev, out);
    } else if (hidden <= 128) {
      FieldMlpKernel<128><<<blocks, kMlpThreads, 0, s.stream>>>(m, s.features.data(), s.mlp_dev, out);
    } else {
      FieldMlpKernel<256><<<blocks, kMlpThreads, 0, s.stream>>>(m, s.features.data(), s.mlp_dev, out);
    }
    FLEXGS_CUDA_RETURN_IF_LAUNCH_FAILED("FieldMlpKernel");
  }
  FLEXGS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(deltas.data(), s.field_deltas.data(), deltas.size() * sizeof(float),
                                              cudaMemcpyDeviceToHost, s.stream));
  return s.Sync();
}

absl::Status CudaGsNetScores(const GsNetWeights& net, const GaussianCloud& cloud, float ratio,
                             absl::Span<float> delta) {
  auto evaluator = CudaElasticEvaluator::Create();
  if (!evaluator.ok()) return evaluator.status();
  FLEXGS_RETURN_IF_ERROR((*evaluator)->SetGsNet(net));
  return (*evaluator)->Scores(cloud, ratio, delta);
}

absl::Status CudaEvalTransformField(const TransformFieldWeights& field, const FieldNormalization& norm,
                                    absl::Span<const float> positions, float ratio, absl::Span<float> deltas) {
  auto evaluator = CudaElasticEvaluator::Create();
  if (!evaluator.ok()) return evaluator.status();
  FLEXGS_RETURN_IF_ERROR((*evaluator)->SetField(field));
  return (*evaluator)->EvalField(norm, positions, ratio, deltas);
}

}  // namespace flexgs
