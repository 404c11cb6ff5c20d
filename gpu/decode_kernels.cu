// Fused decode kernels (see decode_kernels.h): RMSNorm, rotary + cache write, SiLU*mul. Templates
// over the element type; the C entry points dispatch on `dtype`. Attention: decode_attention.cu.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>

#include "gpu/decode_kernels.h"
#include "gpu/element_type.cuh"

namespace {

using tlt_gpu::FromFloat;
using tlt_gpu::Round;
using tlt_gpu::ToFloat;
using tlt_gpu::WarpSum;

// ---- RMSNorm: one block per row ----
template <typename T>
__global__ void RmsNormKernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                              int dim, float eps) {
  const T* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  T* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  float sum = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = ToFloat<T>(xr[i]);
    sum += v * v;
  }
  __shared__ float partial[32];
  sum = WarpSum(sum);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = sum;
  __syncthreads();
  if (warp == 0) {
    float s = lane < (blockDim.x + 31) / 32 ? partial[lane] : 0.f;
    s = WarpSum(s);
    if (lane == 0) partial[0] = s;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float n = Round<T>(ToFloat<T>(xr[i]) * inv);
    yr[i] = FromFloat<T>(ToFloat<T>(w[i]) * n);
  }
}

// ---- Rotary + cache write: one block per row ----
template <typename T>
__global__ void RotaryCacheWriteKernel(const T* __restrict__ qkv, const T* __restrict__ cos,
                                       const T* __restrict__ sin,
                                       const int64_t* __restrict__ positions,
                                       const int64_t* __restrict__ rotary_positions,
                                       const int64_t* __restrict__ slots, T* __restrict__ q_out,
                                       T* __restrict__ k_cache, T* __restrict__ v_cache, int H,
                                       int KV, int D, int64_t max_length) {
  const int b = blockIdx.x;
  const int64_t pos = positions[b];
  const int64_t slot = slots[b];
  const int half = D / 2;
  const T* row = qkv + static_cast<int64_t>(b) * (H + 2 * KV) * D;
  const int64_t rotary = rotary_positions != nullptr ? rotary_positions[b] : pos;
  const T* c = cos + rotary * D;
  const T* s = sin + rotary * D;
  const int64_t cache_row = (slot * max_length + pos) * KV * D;  // [slot, pos, 0, 0]
  for (int idx = threadIdx.x; idx < (H + KV) * half; idx += blockDim.x) {
    const int head = idx / half, i = idx % half;
    const float x1 = ToFloat<T>(row[head * D + i]), x2 = ToFloat<T>(row[head * D + i + half]);
    const float o1 = Round<T>(x1 * ToFloat<T>(c[i])) + Round<T>(-x2 * ToFloat<T>(s[i]));
    const float o2 =
        Round<T>(x2 * ToFloat<T>(c[i + half])) + Round<T>(x1 * ToFloat<T>(s[i + half]));
    if (head < H) {
      T* q = q_out + (static_cast<int64_t>(b) * H + head) * D;
      q[i] = FromFloat<T>(o1);
      q[i + half] = FromFloat<T>(o2);
    } else if (slot >= 0) {
      T* k = k_cache + cache_row + (head - H) * D;
      k[i] = FromFloat<T>(o1);
      k[i + half] = FromFloat<T>(o2);
    }
  }
  if (slot < 0) return;
  for (int idx = threadIdx.x; idx < KV * D; idx += blockDim.x) {
    v_cache[cache_row + idx] = row[(H + KV) * D + idx];
  }
}

// ---- SiLU * mul ----
template <typename T>
__global__ void SiluMulKernel(const T* __restrict__ gate_up, T* __restrict__ out, int64_t rows,
                              int64_t I) {
  const int64_t n = rows * I;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx / I, i = idx % I;
    const float g = ToFloat<T>(gate_up[r * 2 * I + i]);
    const float u = ToFloat<T>(gate_up[r * 2 * I + I + i]);
    const float s = Round<T>(g / (1.f + expf(-g)));
    out[idx] = FromFloat<T>(s * u);
  }
}

template <template <typename> class Launch, typename... Args>
cudaError_t Dispatch(int dtype, Args... args) {
  switch (dtype) {
    case kTltFloat32:
      Launch<float>::Run(args...);
      break;
    case kTltBFloat16:
      Launch<__nv_bfloat16>::Run(args...);
      break;
    case kTltFloat16:
      Launch<__half>::Run(args...);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

template <typename T>
struct RmsNormLaunch {
  static void Run(const void* x, const void* w, void* y, int64_t rows, int64_t dim, float eps,
                  cudaStream_t stream) {
    const int threads = dim >= 1024 ? 1024 : (dim >= 256 ? 256 : 128);
    RmsNormKernel<T><<<static_cast<unsigned>(rows), threads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<T*>(y),
        static_cast<int>(dim), eps);
  }
};

template <typename T>
struct RotaryLaunch {
  static void Run(const void* qkv, const void* cos, const void* sin, const int64_t* positions,
                  const int64_t* rotary_positions, const int64_t* slots, void* q_out, void* k_cache,
                  void* v_cache, int64_t B, int64_t H, int64_t KV, int64_t D, int64_t max_length,
                  cudaStream_t stream) {
    RotaryCacheWriteKernel<T><<<static_cast<unsigned>(B), 256, 0, stream>>>(
        static_cast<const T*>(qkv), static_cast<const T*>(cos), static_cast<const T*>(sin),
        positions, rotary_positions, slots, static_cast<T*>(q_out), static_cast<T*>(k_cache),
        static_cast<T*>(v_cache), static_cast<int>(H), static_cast<int>(KV), static_cast<int>(D),
        max_length);
  }
};

template <typename T>
struct SiluMulLaunch {
  static void Run(const void* gate_up, void* out, int64_t rows, int64_t I, cudaStream_t stream) {
    const int64_t n = rows * I;
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65535);
    SiluMulKernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        static_cast<const T*>(gate_up), static_cast<T*>(out), rows, I);
  }
};

// One block per row: the embedding row, then the gathered hidden row (zeros past hidden_rows),
// in 16-byte words when every row is a whole number of them.
__global__ void EmbedConcatKernel(const int64_t* tokens, const unsigned char* embed,
                                  int64_t vocab, const unsigned char* hidden,
                                  int64_t source_rows, const int64_t* gather, unsigned char* out,
                                  int64_t hidden_rows, int64_t row_bytes, bool vec) {
  const int64_t b = blockIdx.x;
  const int64_t token = tokens[b];
  if (token < 0 || token >= vocab) __trap();
  const unsigned char* src[2] = {embed + token * row_bytes, nullptr};
  if (b < hidden_rows) {
    const int64_t g = gather != nullptr ? gather[b] : b;
    if (g < 0 || g >= source_rows) __trap();
    src[1] = hidden + g * row_bytes;
  }
  unsigned char* dst = out + b * 2 * row_bytes;
  for (int part = 0; part < 2; ++part) {
    unsigned char* d = dst + part * row_bytes;
    const unsigned char* s = src[part];
    if (vec) {
      for (int64_t i = threadIdx.x; i < row_bytes / 16; i += blockDim.x) {
        reinterpret_cast<uint4*>(d)[i] =
            s != nullptr ? reinterpret_cast<const uint4*>(s)[i] : make_uint4(0, 0, 0, 0);
      }
    } else {
      for (int64_t i = threadIdx.x; i < row_bytes; i += blockDim.x) d[i] = s != nullptr ? s[i] : 0;
    }
  }
}

bool Aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

extern "C" {

cudaError_t TltRmsNorm(int dtype, const void* x, const void* weight, void* y, int64_t rows,
                       int64_t dim, float eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return Dispatch<RmsNormLaunch>(dtype, x, weight, y, rows, dim, eps, stream);
}

cudaError_t TltRotaryCacheWrite(int dtype, const void* qkv, const void* cos, const void* sin,
                                const int64_t* positions, const int64_t* rotary_positions,
                                const int64_t* slots, void* q_out, void* k_cache, void* v_cache,
                                int64_t batch, int64_t num_heads, int64_t num_kv_heads,
                                int64_t head_dim, int64_t max_length, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  if (head_dim % 2 != 0) return cudaErrorInvalidValue;
  return Dispatch<RotaryLaunch>(dtype, qkv, cos, sin, positions, rotary_positions, slots, q_out,
                                k_cache, v_cache, batch, num_heads, num_kv_heads, head_dim,
                                max_length, stream);
}

cudaError_t TltSiluMul(int dtype, const void* gate_up, void* out, int64_t rows,
                       int64_t intermediate, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return Dispatch<SiluMulLaunch>(dtype, gate_up, out, rows, intermediate, stream);
}

cudaError_t TltEmbedConcat(int dtype, const int64_t* tokens, const void* embed, int64_t vocab,
                           const void* hidden, int64_t source_rows, const int64_t* gather,
                           void* out, int64_t rows, int64_t hidden_rows, int64_t hidden_size,
                           cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const int64_t elem =
      dtype == kTltFloat32 ? 4 : (dtype == kTltBFloat16 || dtype == kTltFloat16) ? 2 : 0;
  if (elem == 0 || rows < 0 || rows > INT_MAX || hidden_rows < 0 || hidden_size < 1 ||
      vocab < 1 || (hidden_rows > 0 && source_rows < 1)) {
    return cudaErrorInvalidValue;
  }
  const int64_t row_bytes = hidden_size * elem;
  const bool vec = row_bytes % 16 == 0 && Aligned(embed) && Aligned(hidden) && Aligned(out);
  EmbedConcatKernel<<<static_cast<unsigned>(rows), 256, 0, stream>>>(
      tokens, static_cast<const unsigned char*>(embed), vocab,
      static_cast<const unsigned char*>(hidden), source_rows, gather,
      static_cast<unsigned char*>(out), hidden_rows, row_bytes, vec);
  return cudaGetLastError();
}

}  // extern "C"
