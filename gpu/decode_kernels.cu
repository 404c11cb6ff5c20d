// Fused decode kernels (see decode_kernels.h). Templates over the element type; the C entry
// points dispatch on `dtype`.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>

#include "gpu/decode_kernels.h"
#include "gpu/dependent_launch.cuh"
#include "gpu/element_type.cuh"

namespace {

using tlt_gpu::FromFloat;
using tlt_gpu::Round;
using tlt_gpu::ToFloat;
using tlt_gpu::WarpSum;

__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

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

// ---- Decode attention (flash-decoding) ----
constexpr int kAttnThreads = 128;  // one key per thread per tile
constexpr int kMaxGroup = 16;
constexpr int kMaxHeadDim = 256;

int SplitLength(int64_t max_length, int64_t batch, int64_t num_kv_heads) {
  // Whole tiles of 128 keys, at most 64 chunks per row. Small batches split finer (chunks of
  // >= 256 keys, >= 128 below 16 kv rows) so that about two blocks per SM (264) run; large
  // batches use >= 512 keys.
  const int64_t tiles = (max_length + kAttnThreads - 1) / kAttnThreads;
  const int64_t rows = std::max<int64_t>(1, batch * num_kv_heads);
  const int64_t target = (264 + rows - 1) / rows;
  int64_t per_split;
  if (target <= 1) {
    per_split = std::max<int64_t>(4, (tiles + 63) / 64);
  } else {
    // Few rows (batch 1: 2 kv rows for Qwen2-0.5B): chunks down to one tile, so that short
    // contexts still spread over several blocks (one tile per block is a short serial chain).
    const int64_t min_tiles = rows < 16 ? 1 : 2;
    per_split = std::max<int64_t>(
        min_tiles, (tiles + std::min<int64_t>(64, target) - 1) / std::min<int64_t>(64, target));
  }
  return static_cast<int>(per_split * kAttnThreads);
}

// grid (B, KV, splits). Partial results: acc [B, H, S, D], ml [B, H, S, 2] (max, sum). With a
// single split (`out` not null) the block writes the normalized output [B, H * D] directly.
// Per tile of 128 keys: each thread scores one key against the G query heads of its kv head;
// one warp per head updates the running max and sum; then thread (ks, p) accumulates element
// pair p of the weighted values over keys ks, ks + KS, ... (KS = 128 / (D / 2) key lanes) in
// registers, which are summed over the key lanes at the end.
template <typename T>
__global__ void __launch_bounds__(kAttnThreads)
    AttentionPartialKernel(const T* __restrict__ q, const T* __restrict__ cos,
                           const T* __restrict__ sin, T* k_cache, T* v_cache,
                           const int64_t* __restrict__ positions,
                           const int64_t* __restrict__ tree_base,
                           const int64_t* __restrict__ tree_mask, const int64_t* __restrict__ slots,
                           float* __restrict__ part_acc, float* __restrict__ part_ml,
                           T* __restrict__ out, int H, int KV, int D, int64_t max_length,
                           int split_len, float scale) {
  // blockIdx.y = kv head x slice: small batches give each block G / slices of the kv head's
  // query heads (h0 the first), so that more blocks share the work.
  const int b = blockIdx.x, split = blockIdx.z, S = gridDim.z;
  const int slices = gridDim.y / KV;
  const int kvh = blockIdx.y / slices;
  const int G = H / KV / slices;
  const int h0 = kvh * (H / KV) + (blockIdx.y % slices) * G;
  tlt_gpu::WaitForPredecessor();  // q/k/v come from the kernel before (dependent launch)
  tlt_gpu::AllowDependents();
  const int64_t slot = slots[b];
  const int tid = threadIdx.x;
  if (slot < 0) {
    if (out != nullptr) {
      for (int idx = tid; idx < G * D; idx += kAttnThreads) {
        out[(static_cast<int64_t>(b) * H + h0) * D + idx] = FromFloat<T>(0.f);
      }
    }
    return;
  }
  const int64_t L = positions[b] + 1;
  // Tree rows: keys [base, L - 1) are visible where their bit of `visible` is set.
  const int64_t base = tree_base != nullptr ? tree_base[b] : -1;
  const uint64_t visible = base >= 0 ? static_cast<uint64_t>(tree_mask[b]) : 0;
  const int64_t begin = static_cast<int64_t>(split) * split_len;
  const int64_t end = min(L, begin + split_len);
  __shared__ float qs[kMaxGroup * kMaxHeadDim];
  __shared__ float acc[kMaxGroup * kMaxHeadDim];
  __shared__ float sc[kMaxGroup][kAttnThreads];
  __shared__ float m[kMaxGroup], l[kMaxGroup], alpha[kMaxGroup];
  const int64_t stride = static_cast<int64_t>(KV) * D;  // between positions
  if (cos == nullptr) {
    for (int idx = tid; idx < G * D; idx += kAttnThreads) {
      qs[idx] = ToFloat<T>(q[(static_cast<int64_t>(b) * H + h0) * D + idx]) * scale;
    }
  } else {
    // q is the q/k/v projection: rotate this kv head's queries; the block whose chunk holds the
    // new position also rotates and writes the new key and value (read back after the barrier).
    const int half = D / 2;
    const int64_t pos = L - 1;
    const T* row = q + static_cast<int64_t>(b) * (H + 2 * KV) * D;
    const T* c = cos + pos * D;
    const T* sn = sin + pos * D;
    const bool writes = pos >= begin && pos < begin + split_len;
    const int heads = G + (writes ? 1 : 0);
    for (int idx = tid; idx < heads * half; idx += kAttnThreads) {
      const int g = idx / half, i = idx % half;
      const int head = g < G ? h0 + g : H + kvh;  // every slice writes the same key
      const float x1 = ToFloat<T>(row[head * D + i]), x2 = ToFloat<T>(row[head * D + i + half]);
      const float o1 =
          Round<T>(Round<T>(x1 * ToFloat<T>(c[i])) + Round<T>(-x2 * ToFloat<T>(sn[i])));
      const float o2 = Round<T>(Round<T>(x2 * ToFloat<T>(c[i + half])) +
                                Round<T>(x1 * ToFloat<T>(sn[i + half])));
      if (g < G) {
        qs[g * D + i] = o1 * scale;
        qs[g * D + i + half] = o2 * scale;
      } else {
        T* k = k_cache + (slot * max_length + pos) * stride + kvh * D;
        k[i] = FromFloat<T>(o1);
        k[i + half] = FromFloat<T>(o2);
      }
    }
    if (writes) {
      T* v = v_cache + (slot * max_length + pos) * stride + kvh * D;
      for (int d = tid; d < D; d += kAttnThreads) v[d] = row[(H + KV + kvh) * D + d];
    }
  }
  if (tid < G) {
    m[tid] = -FLT_MAX;
    l[tid] = 0.f;
  }
  __syncthreads();
  const T* kbase = k_cache + (slot * max_length) * stride + kvh * D;
  const T* vbase = v_cache + (slot * max_length) * stride + kvh * D;
  const int warp = tid / 32, lane = tid % 32, num_warps = kAttnThreads / 32;
  const int P = D / 2, KS = kAttnThreads / P;
  const int pair = tid % P, ks = tid / P;
  constexpr int kVec = 16 / sizeof(T);
  const bool vector_k = D % kVec == 0;
  float acc_r[kMaxGroup][2];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) acc_r[g][0] = acc_r[g][1] = 0.f;
  for (int64_t k0 = begin; k0 < end; k0 += kAttnThreads) {
    const int n = static_cast<int>(min(static_cast<int64_t>(kAttnThreads), end - k0));
    if (tid < n) {
      float dots[kMaxGroup];
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) dots[g] = 0.f;
      const T* krow = kbase + (k0 + tid) * stride;
      if (vector_k) {
#pragma unroll 8
        for (int d0 = 0; d0 < D; d0 += kVec) {
          const uint4 raw = *reinterpret_cast<const uint4*>(krow + d0);
          const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
          for (int i = 0; i < kVec; ++i) {
            const float kv = ToFloat<T>(e[i]);
#pragma unroll
            for (int g = 0; g < kMaxGroup; ++g) {
              if (g < G) dots[g] += qs[g * D + d0 + i] * kv;
            }
          }
        }
      } else {
        for (int d = 0; d < D; ++d) {
          const float kv = ToFloat<T>(krow[d]);
#pragma unroll
          for (int g = 0; g < kMaxGroup; ++g) {
            if (g < G) dots[g] += qs[g * D + d] * kv;
          }
        }
      }
      const int64_t key = k0 + tid;
      const bool masked = base >= 0 && key >= base && key < L - 1 &&
                          (key - base >= 64 || ((visible >> (key - base)) & 1u) == 0);
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < G) sc[g][tid] = masked ? -FLT_MAX : dots[g];
      }
    }
    __syncthreads();
    for (int g = warp; g < G; g += num_warps) {
      float mx = -FLT_MAX;
      for (int j = lane; j < n; j += 32) mx = fmaxf(mx, sc[g][j]);
      mx = WarpMax(mx);
      const float m_new = fmaxf(m[g], mx);
      float sum = 0.f;
      for (int j = lane; j < n; j += 32) {
        const float p = sc[g][j] > -FLT_MAX ? __expf(sc[g][j] - m_new) : 0.f;  // 0: masked
        sc[g][j] = p;
        sum += p;
      }
      sum = WarpSum(sum);
      if (lane == 0) {
        const float a = __expf(m[g] - m_new);
        alpha[g] = a;
        l[g] = l[g] * a + sum;
        m[g] = m_new;
      }
    }
    __syncthreads();
    if (ks < KS) {
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < G) {
          acc_r[g][0] *= alpha[g];
          acc_r[g][1] *= alpha[g];
        }
      }
      const T* v = vbase + k0 * stride + 2 * pair;
#pragma unroll 8
      for (int j = ks; j < n; j += KS) {
        const float v0 = ToFloat<T>(v[j * stride]), v1 = ToFloat<T>(v[j * stride + 1]);
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) {
          if (g < G) {
            const float p = sc[g][j];
            acc_r[g][0] += p * v0;
            acc_r[g][1] += p * v1;
          }
        }
      }
    }
    __syncthreads();
  }
  // Sum the key lanes: acc[(ks * G + g) * D + d], KS * G * D <= 256 * G floats.
  if (ks < KS) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < G) {
        acc[(ks * G + g) * D + 2 * pair] = acc_r[g][0];
        acc[(ks * G + g) * D + 2 * pair + 1] = acc_r[g][1];
      }
    }
  }
  __syncthreads();
  for (int idx = tid; idx < G * D; idx += kAttnThreads) {
    const int g = idx / D, d = idx % D;
    float a = 0.f;
    for (int k = 0; k < KS; ++k) a += acc[(k * G + g) * D + d];
    if (out != nullptr) {
      out[(static_cast<int64_t>(b) * H + h0) * D + idx] = FromFloat<T>(a / l[g]);
    } else {
      const int h = h0 + g;
      part_acc[((static_cast<int64_t>(b) * H + h) * S + split) * D + d] = a;
    }
  }
  if (out == nullptr && tid < G) {
    const int h = h0 + tid;
    float* ml = part_ml + ((static_cast<int64_t>(b) * H + h) * S + split) * 2;
    ml[0] = begin < L ? m[tid] : -FLT_MAX;
    ml[1] = begin < L ? l[tid] : 0.f;
  }
}

// grid (B * H), block D threads.
template <typename T>
__global__ void AttentionCombineKernel(const float* __restrict__ part_acc,
                                       const float* __restrict__ part_ml,
                                       const int64_t* __restrict__ slots, T* __restrict__ out,
                                       int H, int D, int S) {
  const int bh = blockIdx.x, d = threadIdx.x;
  const int b = bh / H;
  tlt_gpu::WaitForPredecessor();
  tlt_gpu::AllowDependents();
  if (d >= D) return;
  if (slots[b] < 0) {
    out[static_cast<int64_t>(bh) * D + d] = FromFloat<T>(0.f);
    return;
  }
  const float* ml = part_ml + static_cast<int64_t>(bh) * S * 2;
  float M = -FLT_MAX;
  for (int s = 0; s < S; ++s) M = fmaxf(M, ml[2 * s]);
  float num = 0.f, den = 0.f;
  for (int s = 0; s < S; ++s) {
    if (ml[2 * s + 1] <= 0.f) continue;
    const float w = __expf(ml[2 * s] - M);
    den += w * ml[2 * s + 1];
    num += w * part_acc[(static_cast<int64_t>(bh) * S + s) * D + d];
  }
  out[static_cast<int64_t>(bh) * D + d] = FromFloat<T>(den > 0.f ? num / den : 0.f);
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
                  const int64_t* rotary_positions, const int64_t* slots, void* q_out,
                  void* k_cache, void* v_cache, int64_t B, int64_t H, int64_t KV, int64_t D,
                  int64_t max_length, cudaStream_t stream) {
    RotaryCacheWriteKernel<T><<<static_cast<unsigned>(B), 256, 0, stream>>>(
        static_cast<const T*>(qkv), static_cast<const T*>(cos), static_cast<const T*>(sin),
        positions, rotary_positions, slots, static_cast<T*>(q_out), static_cast<T*>(k_cache),
        static_cast<T*>(v_cache), static_cast<int>(H), static_cast<int>(KV), static_cast<int>(D),
        max_length);
  }
};

template <typename T>
struct AttentionLaunch {
  static void Run(const void* q, const void* cos, const void* sin, void* k_cache, void* v_cache,
                  const int64_t* positions, const int64_t* tree_base, const int64_t* tree_mask,
                  const int64_t* slots, void* out, float* workspace, int64_t B, int64_t H,
                  int64_t KV, int64_t D, int64_t max_length, cudaStream_t stream) {
    const int split_len = SplitLength(max_length, B, KV);
    const int S = static_cast<int>((max_length + split_len - 1) / split_len);
    float* part_acc = workspace;
    float* part_ml = workspace + B * H * S * D;
    // Fewer than 64 (row, kv head) pairs: one block per query head instead of per kv head.
    const int64_t slices = B * KV < 64 ? H / KV : 1;
    dim3 grid(static_cast<unsigned>(B), static_cast<unsigned>(KV * slices),
              static_cast<unsigned>(S));
    tlt_gpu::LaunchDependent(
        AttentionPartialKernel<T>, grid, dim3(kAttnThreads), 0, stream,
        static_cast<const T*>(q), static_cast<const T*>(cos), static_cast<const T*>(sin),
        static_cast<T*>(k_cache), static_cast<T*>(v_cache), positions, tree_base, tree_mask,
        slots, part_acc, part_ml, S == 1 ? static_cast<T*>(out) : nullptr, static_cast<int>(H),
        static_cast<int>(KV), static_cast<int>(D), max_length, split_len,
        1.f / sqrtf(static_cast<float>(D)));
    if (S == 1) return;
    tlt_gpu::LaunchDependent(AttentionCombineKernel<T>, dim3(static_cast<unsigned>(B * H)),
                             dim3(static_cast<unsigned>(D)), 0, stream,
                             static_cast<const float*>(part_acc),
                             static_cast<const float*>(part_ml), slots, static_cast<T*>(out),
                             static_cast<int>(H), static_cast<int>(D), S);
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
  return Dispatch<RotaryLaunch>(dtype, qkv, cos, sin, positions, rotary_positions, slots, q_out, k_cache, v_cache,
                                batch, num_heads, num_kv_heads, head_dim, max_length, stream);
}

int64_t TltDecodeAttentionWorkspaceBytes(int64_t batch, int64_t num_heads, int64_t num_kv_heads,
                                         int64_t head_dim, int64_t max_length) {
  const int split_len = SplitLength(max_length, batch, num_kv_heads);
  const int64_t S = (max_length + split_len - 1) / split_len;
  return batch * num_heads * S * (head_dim + 2) * static_cast<int64_t>(sizeof(float));
}

cudaError_t TltDecodeAttention(int dtype, const void* q, const void* cos, const void* sin,
                               void* k_cache, void* v_cache, const int64_t* positions,
                               const int64_t* tree_base, const int64_t* tree_mask,
                               const int64_t* slots, void* out, float* workspace, int64_t batch,
                               int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                               int64_t max_length, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  if (head_dim > kMaxHeadDim || num_kv_heads <= 0 || num_heads % num_kv_heads != 0 ||
      num_heads / num_kv_heads > kMaxGroup || (tree_base != nullptr) != (tree_mask != nullptr) ||
      (tree_base != nullptr && cos != nullptr)) {
    return cudaErrorInvalidValue;
  }
  return Dispatch<AttentionLaunch>(dtype, q, cos, sin, k_cache, v_cache, positions, tree_base,
                                   tree_mask, slots, out,
                                   workspace, batch, num_heads, num_kv_heads, head_dim, max_length,
                                   stream);
}

cudaError_t TltSiluMul(int dtype, const void* gate_up, void* out, int64_t rows,
                       int64_t intermediate, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  return Dispatch<SiluMulLaunch>(dtype, gate_up, out, rows, intermediate, stream);
}

}  // extern "C"
