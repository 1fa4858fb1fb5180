// CUDA differentiable rasterizer (kernels/cuda_rasterizer_backward.cu): the GPU twin of
// DifferentiableRasterizer (core/render/rasterizer_backward.h), checked against it by
// tests/unit/kernels/rasterizer_cuda_test.cc (CudaDifferentiableTest).
//
// Plain C++ header, included by backend.cc in every build; the function exists only
// when the project is built with CUDA (FLEXGS_HAS_CUDA). Callers go through
// CreateDifferentiableRasterBackend (kernels/backend.h), which checks availability.
#pragma once

#include <memory>

#include "render/rasterizer_backward.h"

namespace flexgs {

// Construction does not touch the GPU; the first Forward creates the stream and buffers.
std::unique_ptr<DifferentiableRasterBackend> NewCudaDifferentiableRasterizer();

}  // namespace flexgs
