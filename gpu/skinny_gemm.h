// Tensor-core GEMM for few rows (a decode step of 5-64 rows, a verification step of draft-tree
// rows): out [rows, n] = x [rows, k] . weight [n, k]^T (+ bias [n]) (+ residual [rows, n]), in
// bfloat16 or float16 with float32 accumulation and one rounding at the end (as cuBLAS addmm).
//
// Made for the decode regime where every weight is read once per step and cuBLAS's kernels for
// skinny shapes stay far from the memory bound. One block of 8 warps per 8 output columns; each
// warp takes every 8th 32-wide slice of k, reads its 8 weight rows with 16-byte loads and runs
// mma.sync m16n8k16 against 16-row tiles of x (k permuted identically in both operands, so the
// 16-byte chunks need no shuffling); the block sums its warps in shared memory and adds bias and
// residual. x, weight, bias, residual and out must be contiguous; x and weight 16-byte
// aligned; out may be residual. Requires compute capability >= 8.0.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

extern "C" {

struct TltSkinnyGemmParams {
  int dtype;             // kTltBFloat16 or kTltFloat16 (gpu/decode_kernels.h)
  const void* x;         // [rows, k]
  const void* weight;    // [n, k]
  const void* bias;      // [n] or null
  const void* residual;  // [rows, n] or null
  void* out;             // [rows, n]
  int64_t rows, n, k;
};

// Nonzero when TltSkinnyGemm takes this shape: bfloat16/float16, 1 <= rows <= 64, k a positive
// multiple of 32, n >= 1, and a device of compute capability >= 8.0.
int TltSkinnyGemmSupported(int dtype, int64_t rows, int64_t n, int64_t k);

// Launches the GEMM (with programmatic dependent launch where available). Returns
// cudaErrorInvalidValue for an unsupported shape or misaligned pointer.
cudaError_t TltSkinnyGemm(const TltSkinnyGemmParams* params, cudaStream_t stream);

}  // extern "C"
