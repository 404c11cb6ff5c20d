// Small-batch GEMV for the decode step (1..8 rows), with the RMSNorm before it and the bias /
// residual add, SiLU*mul or greedy argmax after it fused in, and the greedy tail kernel.
//
// A C interface on raw device pointers and a cudaStream_t, without torch headers (as
// gpu/decode_kernels.h; dtype is a TltDtype: 0 float32, 1 bfloat16, 2 float16). Every pointer
// of one call has the element type, except the float32 outputs named below. Launch errors come
// back as cudaError_t; unsupported shapes or misaligned pointers as cudaErrorInvalidValue.
//
// y = x W^T for W [n, k] row-major (a Linear's weight), float32 accumulation, one rounding to
// the element type per eager op (models/transformer.cc), so results match the eager LibTorch
// path up to the summation order:
//   norm_weight (may be null): x is first RMSNorm'ed, x' = round(w * round(x / rms(x)))
//     (as TltRmsNorm); norm_out (may be null) then receives x' [rows, k];
//   silu_mul = 0: y = round(x W^T + bias) + residual (bias [n], residual [rows, n]; both may
//     be null), rounded to the element type;
//   silu_mul = 1: W is [2 n, k] (gate rows, then up rows), y = round(silu(round(g))) * round(u);
//   out_float32 = 1 (silu_mul = 0 only): out is float32, holding the rounded y widened
//     (exactly the eager `mm(...).to(float32)`);
//   greedy_packed (may be null; out_float32 only): also writes, per row b < rows, the argmax
//     column of y (first index of the maximum; NaN counts as the maximum) as a double at
//     greedy_packed[b] and 0.0 at greedy_packed[packed_stride + b], through `workspace`
//     (TltGemvWorkspaceBytes(rows) bytes of device memory).
//
// Design: a persistent grid (a couple of 256-thread blocks per SM; the SM count is queried
// once per device and cached); each block stages x (normalized when asked) once into shared
// memory in the element type; warps stride over units of two output columns (or the gate/up
// pair) with 16-byte weight loads; small n splits k over up to 8 warps of a block. Fixed grid
// and summation order for a given shape: results are deterministic (graph replay == eager).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

extern "C" {

struct TltGemvParams {
  int dtype;
  const void* x;            // [rows, k]
  const void* norm_weight;  // [k] or null
  float eps;                // RMSNorm epsilon
  void* norm_out;           // [rows, k] or null (needs norm_weight)
  const void* weight;       // [n, k], or [2 n, k] with silu_mul
  const void* bias;         // [n] or null
  const void* residual;     // [rows, n] or null
  void* out;                // [rows, n]: element type, or float32 with out_float32
  int64_t rows, n, k;
  int silu_mul;
  int out_float32;
  double* greedy_packed;  // [2, packed_stride] float64, or null
  int64_t packed_stride;  // >= rows
  void* workspace;        // TltGemvWorkspaceBytes(rows) bytes when greedy_packed
};

// 1 when TltGemv takes this shape on the current device: 1 <= rows <= 8, k a multiple of
// 16 bytes of elements, rows * k elements within the block's shared memory.
int TltGemvSupported(int dtype, int64_t rows, int64_t k);

// Device bytes of TltGemvParams::workspace for `rows` rows (current device).
int64_t TltGemvWorkspaceBytes(int64_t rows);

cudaError_t TltGemv(const struct TltGemvParams* params, cudaStream_t stream);

// The greedy tail without the GEMV: logits float32 [rows, vocab] (row-major) ->
// packed[b] = argmax (first index of the maximum, NaN the maximum) as a double,
// packed[packed_stride + b] = 0.0.
cudaError_t TltGreedyPack(const float* logits, int64_t rows, int64_t vocab, double* packed,
                          int64_t packed_stride, cudaStream_t stream);

}  // extern "C"
