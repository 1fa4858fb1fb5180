// CUDA rasterizer backend (kernels/cuda_rasterizer.cu).
//
// Plain C++ header on purpose: it is included by backend.cc, which is compiled by
// the host compiler in every build. Both functions exist only when the project is
// built with CUDA (FLEXGS_HAS_CUDA); callers go through kernels/backend.h, which
// checks availability first.
#pragma once

#include <memory>
#include <string>

#include "core/rasterizer.h"

namespace flexgs {

// A new CUDA rasterizer. Construction does not touch the GPU; the first Render
// creates the stream and buffers, so call CudaRuntimeAvailable() first.
std::unique_ptr<RasterBackend> NewCudaRasterBackend();

// True when the CUDA runtime finds a device that can run this binary's kernels;
// otherwise `why` (if non-null) says why not. The answer is computed once per process.
bool CudaRuntimeAvailable(std::string* why);

}  // namespace flexgs
