// Small-batch GEMV and greedy tail (see gemv_kernels.h). Templates over the element type T, the
// row count R (compile-time accumulators) and the epilogue; the C entry points dispatch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "gpu/decode_kernels.h"  // TltDtype
#include "gpu/dependent_launch.cuh"
#include "gpu/device_info.h"
#include "gpu/element_type.cuh"
#include "gpu/gemv_kernels.h"

namespace {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kMaxRows = 8;
constexpr int kUnroll = 4;       // 16-byte chunks per column in flight per lane
constexpr int kBlocksPerSm = 2;  // persistent grid: SMs x this (fewer when shared memory is short)
constexpr int kStaticSmem = 1024;

using tlt_gpu::FromFloat;
using tlt_gpu::Round;
using tlt_gpu::ToFloat;
using tlt_gpu::WarpSum;

// Argmax order: NaN above everything, then larger values, then smaller indices.
__device__ __forceinline__ bool Better(float a, int ia, float b, int ib) {
  const bool an = isnan(a), bn = isnan(b);
  if (an != bn) return an;
  if (!an && a != b) return a > b;
  return ia < ib;
}

template <typename T>
struct GemvArgs {
  const T* x;
  const T* norm_w;
  T* norm_out;
  const T* w;
  const T* bias;
  const T* residual;
  void* out;
  float* best_val;  // [R, gridDim.x] per-block argmax, or null
  int* best_idx;
  int N, K, units, split;
  float eps;
};

// The two weight rows of a unit: gate and up row (silu), or columns 2u and 2u + 1 (the second
// repeats the first past the end; its result is not stored).
template <typename T, bool kSilu>
__device__ __forceinline__ void UnitRows(const GemvArgs<T>& a, int unit, const T*& ra,
                                         const T*& rb) {
  const int64_t K = a.K;
  if (kSilu) {
    ra = a.w + unit * K;
    rb = a.w + (a.N + static_cast<int64_t>(unit)) * K;
  } else {
    const int n0 = 2 * unit;
    ra = a.w + n0 * K;
    rb = n0 + 1 < a.N ? ra + K : ra;
  }
}

// Stores y for row r, column n (rounded to T; float32 widened) and returns the stored value.
template <typename T, bool kFloatOut>
__device__ __forceinline__ float Store(const GemvArgs<T>& a, int r, int n, float y) {
  const int64_t at = static_cast<int64_t>(r) * a.N + n;
  const float rounded = Round<T>(y);
  if (kFloatOut) {
    static_cast<float*>(a.out)[at] = rounded;
  } else {
    static_cast<T*>(a.out)[at] = FromFloat<T>(y);
  }
  return rounded;
}

template <typename T>
__device__ __forceinline__ float BiasResidual(const GemvArgs<T>& a, int r, int n, float acc) {
  float y = acc + (a.bias != nullptr ? ToFloat<T>(a.bias[n]) : 0.f);
  if (a.residual != nullptr) {
    y = Round<T>(y) + ToFloat<T>(a.residual[static_cast<int64_t>(r) * a.N + n]);
  }
  return y;
}

template <typename T, int R, bool kSilu, bool kFloatOut>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm) GemvKernel(const GemvArgs<T> a) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* xs = reinterpret_cast<T*>(smem);  // [R, K], normalized when norm_w
  __shared__ float inv[R];
  __shared__ float red[kWarps][2][R];
  __shared__ int red_idx[kWarps][R];
  constexpr int kVec = 16 / sizeof(T), kChunk = 32 * kVec;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int K = a.K, S = a.split, per_block = kWarps / S, slice = warp % S;
  const int chunks = (K + kChunk - 1) / kChunk;

  // Start the first tile's weight reads towards L2 while x is staged.
  if (blockIdx.x * per_block + warp / S < a.units && lane % 8 == 0) {
    const T *ra, *rb;
    UnitRows<T, kSilu>(a, blockIdx.x * per_block + warp / S, ra, rb);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int k = (slice + u * S) * kChunk + lane * kVec;
      if (k < K) {
        asm volatile("prefetch.global.L2 [%0];" ::"l"(ra + k));
        asm volatile("prefetch.global.L2 [%0];" ::"l"(rb + k));
      }
    }
  }
  // Everything below reads activations: wait for the kernel before (dependent launch).
  tlt_gpu::WaitForPredecessor();
  tlt_gpu::AllowDependents();
  const int total = R * K;
  for (int i = threadIdx.x; i < total / kVec; i += kThreads) {
    reinterpret_cast<uint4*>(xs)[i] = __ldg(reinterpret_cast<const uint4*>(a.x) + i);
  }
  if (a.norm_w != nullptr) {
    __syncthreads();
    if (warp < R) {
      float s = 0.f;
      for (int k = lane; k < K; k += 32) {
        const float v = ToFloat<T>(xs[warp * K + k]);
        s += v * v;
      }
      s = WarpSum(s);
      if (lane == 0) inv[warp] = rsqrtf(s / K + a.eps);
    }
    __syncthreads();
    const bool write = a.norm_out != nullptr && blockIdx.x == 0;
    for (int i = threadIdx.x; i < total; i += kThreads) {
      const int r = i / K;
      const T v = FromFloat<T>(ToFloat<T>(a.norm_w[i - r * K]) *
                               Round<T>(ToFloat<T>(xs[i]) * inv[r]));
      xs[i] = v;
      if (write) a.norm_out[i] = v;
    }
  }
  __syncthreads();

  float best[R];
  int best_i[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    best[r] = -INFINITY;
    best_i[r] = INT_MAX;
  }
  for (int tile = blockIdx.x; tile * per_block < a.units; tile += gridDim.x) {  // block-uniform
    const int unit = tile * per_block + warp / S;
    float acc[R], acc2[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = acc2[r] = 0.f;
    if (unit < a.units) {
      const T *ra, *rb;
      UnitRows<T, kSilu>(a, unit, ra, rb);
      for (int c0 = slice; c0 < chunks; c0 += S * kUnroll) {
        uint4 wa[kUnroll], wb[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int k = (c0 + u * S) * kChunk + lane * kVec;
          wa[u] = wb[u] = make_uint4(0, 0, 0, 0);
          if (k < K) {
            wa[u] = __ldg(reinterpret_cast<const uint4*>(ra + k));
            wb[u] = __ldg(reinterpret_cast<const uint4*>(rb + k));
          }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int k = (c0 + u * S) * kChunk + lane * kVec;
          if (k >= K) continue;
          const T* ea = reinterpret_cast<const T*>(&wa[u]);
          const T* eb = reinterpret_cast<const T*>(&wb[u]);
          float fa[kVec], fb[kVec];
#pragma unroll
          for (int i = 0; i < kVec; ++i) {
            fa[i] = ToFloat<T>(ea[i]);
            fb[i] = ToFloat<T>(eb[i]);
          }
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const uint4 xr = *reinterpret_cast<const uint4*>(xs + r * K + k);
            const T* ex = reinterpret_cast<const T*>(&xr);
#pragma unroll
            for (int i = 0; i < kVec; ++i) {
              const float xv = ToFloat<T>(ex[i]);
              acc[r] += fa[i] * xv;
              acc2[r] += fb[i] * xv;
            }
          }
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        acc[r] = WarpSum(acc[r]);
        acc2[r] = WarpSum(acc2[r]);
      }
    }
    if (S > 1) {  // k was split over the S warps of the unit: fixed-order sum in shared memory
      if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          red[warp][0][r] = acc[r];
          red[warp][1][r] = acc2[r];
        }
      }
      __syncthreads();
      if (slice == 0) {
        for (int s = 1; s < S; ++s) {
#pragma unroll
          for (int r = 0; r < R; ++r) {
            acc[r] += red[warp + s][0][r];
            acc2[r] += red[warp + s][1][r];
          }
        }
      }
      __syncthreads();
    }
    if (slice != 0 || lane != 0 || unit >= a.units) continue;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (kSilu) {
        const float g = Round<T>(acc[r]), u = Round<T>(acc2[r]);
        Store<T, false>(a, r, unit, Round<T>(g / (1.f + expf(-g))) * u);
      } else {
        const int n0 = 2 * unit;
        float y = Store<T, kFloatOut>(a, r, n0, BiasResidual(a, r, n0, acc[r]));
        if (Better(y, n0, best[r], best_i[r])) best[r] = y, best_i[r] = n0;
        if (n0 + 1 < a.N) {
          y = Store<T, kFloatOut>(a, r, n0 + 1, BiasResidual(a, r, n0 + 1, acc2[r]));
          if (Better(y, n0 + 1, best[r], best_i[r])) best[r] = y, best_i[r] = n0 + 1;
        }
      }
    }
  }
  if (kFloatOut && a.best_val != nullptr) {  // block-uniform: per-block argmax of each row
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        red[warp][0][r] = best[r];
        red_idx[warp][r] = best_i[r];
      }
    }
    __syncthreads();
    if (threadIdx.x < R) {
      const int r = threadIdx.x;
      float v = red[0][0][r];
      int i = red_idx[0][r];
      for (int w = 1; w < kWarps; ++w) {
        if (Better(red[w][0][r], red_idx[w][r], v, i)) v = red[w][0][r], i = red_idx[w][r];
      }
      a.best_val[r * gridDim.x + blockIdx.x] = v;
      a.best_idx[r * gridDim.x + blockIdx.x] = i;
    }
  }
}

// One block per row: argmax of values[b, 0 .. count) (indices[b, i], or i when null) ->
// packed[b] (as a double), packed[packed_stride + b] = 0.
__global__ void GreedyPackKernel(const float* __restrict__ values, const int* __restrict__ indices,
                                 int count, int64_t row_stride, double* __restrict__ packed,
                                 int64_t packed_stride) {
  const int64_t b = blockIdx.x;
  float v = -INFINITY;
  int id = INT_MAX;
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const float x = values[b * row_stride + i];
    const int j = indices != nullptr ? indices[b * row_stride + i] : i;
    if (Better(x, j, v, id)) v = x, id = j;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, id, o);
    if (Better(ov, oi, v, id)) v = ov, id = oi;
  }
  __shared__ float sv[32];
  __shared__ int si[32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) sv[warp] = v, si[warp] = id;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) {
      if (Better(sv[w], si[w], v, id)) v = sv[w], id = si[w];
    }
    packed[b] = static_cast<double>(id);
    packed[packed_stride + b] = 0.0;
  }
}

using tlt_gpu::CurrentDevice;
using tlt_gpu::DeviceInfo;

int64_t ElementBytes(int dtype) { return dtype == kTltFloat32 ? 4 : 2; }

// The launch shape for one call.
struct Plan {
  int grid = 0, split = 1, units = 0;
  size_t smem = 0;
};

Plan MakePlan(const TltGemvParams& p, const DeviceInfo& d) {
  Plan plan;
  plan.smem = static_cast<size_t>(p.rows * p.k * ElementBytes(p.dtype));
  const int fit = d.smem_per_sm / static_cast<int>(plan.smem + kStaticSmem + 1024);
  const int max_blocks = d.sms * std::max(1, std::min(kBlocksPerSm, fit));
  const int64_t k_chunks = (p.k * ElementBytes(p.dtype) + 511) / 512;  // 32 lanes x 16 bytes
  plan.units = static_cast<int>(p.silu_mul ? p.n : (p.n + 1) / 2);
  const int64_t warps = static_cast<int64_t>(max_blocks) * kWarps;
  while (plan.split < kWarps && plan.units * plan.split * 2LL <= warps &&
         plan.split * 2 <= k_chunks) {
    plan.split *= 2;
  }
  const int per_block = kWarps / plan.split;
  const int64_t tiles = (plan.units + per_block - 1) / per_block;
  plan.grid = static_cast<int>(std::min<int64_t>(max_blocks, tiles));
  return plan;
}

template <typename Kernel, typename Args>
cudaError_t Launch(Kernel kernel, const Args& args, const Plan& plan, cudaStream_t stream) {
  // Static shared memory (under kStaticSmem) counts against the 48 KiB default too. The opt-in
  // is always the device's maximum, so it never shrinks below a size an earlier call (or a
  // captured graph node) uses.
  if (plan.smem + kStaticSmem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               CurrentDevice().smem_optin - kStaticSmem);
    if (e != cudaSuccess) return e;
  }
  return tlt_gpu::LaunchDependent(kernel, dim3(plan.grid), dim3(kThreads), plan.smem, stream,
                                  args);
}

template <typename T, int R>
cudaError_t LaunchRows(const GemvArgs<T>& a, const TltGemvParams& p, const Plan& plan,
                       cudaStream_t stream) {
  if (p.silu_mul) return Launch(GemvKernel<T, R, true, false>, a, plan, stream);
  if (p.out_float32) return Launch(GemvKernel<T, R, false, true>, a, plan, stream);
  return Launch(GemvKernel<T, R, false, false>, a, plan, stream);
}

template <typename T>
cudaError_t LaunchType(const TltGemvParams& p, const Plan& plan, float* best_val, int* best_idx,
                       cudaStream_t stream) {
  const GemvArgs<T> a{static_cast<const T*>(p.x),        static_cast<const T*>(p.norm_weight),
                      static_cast<T*>(p.norm_out),       static_cast<const T*>(p.weight),
                      static_cast<const T*>(p.bias),     static_cast<const T*>(p.residual),
                      p.out,                             best_val,
                      best_idx,                          static_cast<int>(p.n),
                      static_cast<int>(p.k),             plan.units,
                      plan.split,                        p.eps};
  switch (p.rows) {
    case 1: return LaunchRows<T, 1>(a, p, plan, stream);
    case 2: return LaunchRows<T, 2>(a, p, plan, stream);
    case 3: return LaunchRows<T, 3>(a, p, plan, stream);
    case 4: return LaunchRows<T, 4>(a, p, plan, stream);
    case 5: return LaunchRows<T, 5>(a, p, plan, stream);
    case 6: return LaunchRows<T, 6>(a, p, plan, stream);
    case 7: return LaunchRows<T, 7>(a, p, plan, stream);
    case 8: return LaunchRows<T, 8>(a, p, plan, stream);
    default: return cudaErrorInvalidValue;
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

extern "C" {

int TltGemvSupported(int dtype, int64_t rows, int64_t k) {
  if (dtype != kTltFloat32 && dtype != kTltBFloat16 && dtype != kTltFloat16) return 0;
  const int64_t vec = 16 / ElementBytes(dtype);
  const int64_t bytes = rows * k * ElementBytes(dtype);
  return rows >= 1 && rows <= kMaxRows && k > 0 && k % vec == 0 &&
         bytes + kStaticSmem <= CurrentDevice().smem_optin;
}

int64_t TltGemvWorkspaceBytes(int64_t rows) {
  return rows * CurrentDevice().sms * kBlocksPerSm * static_cast<int64_t>(2 * sizeof(float));
}

cudaError_t TltGemv(const TltGemvParams* params, cudaStream_t stream) {
  const TltGemvParams& p = *params;
  if (!TltGemvSupported(p.dtype, p.rows, p.k) || p.n < 1 || p.n > INT_MAX / 2 ||
      p.rows * p.k > INT_MAX || !Aligned16(p.x) || !Aligned16(p.weight) ||
      (p.norm_out != nullptr && (p.norm_weight == nullptr || !Aligned16(p.norm_out))) ||
      (p.silu_mul && p.out_float32) ||
      (p.greedy_packed != nullptr &&
       (!p.out_float32 || p.workspace == nullptr || p.packed_stride < p.rows))) {
    return cudaErrorInvalidValue;
  }
  const DeviceInfo d = CurrentDevice();
  const Plan plan = MakePlan(p, d);
  float* best_val = nullptr;
  int* best_idx = nullptr;
  if (p.greedy_packed != nullptr) {
    best_val = static_cast<float*>(p.workspace);
    best_idx = reinterpret_cast<int*>(best_val + p.rows * d.sms * kBlocksPerSm);
  }
  cudaError_t e = cudaErrorInvalidValue;
  switch (p.dtype) {
    case kTltFloat32: e = LaunchType<float>(p, plan, best_val, best_idx, stream); break;
    case kTltBFloat16: e = LaunchType<__nv_bfloat16>(p, plan, best_val, best_idx, stream); break;
    case kTltFloat16: e = LaunchType<__half>(p, plan, best_val, best_idx, stream); break;
  }
  if (e != cudaSuccess || p.greedy_packed == nullptr) return e;
  GreedyPackKernel<<<static_cast<unsigned>(p.rows), 256, 0, stream>>>(
      best_val, best_idx, plan.grid, plan.grid, p.greedy_packed, p.packed_stride);
  return cudaGetLastError();
}

cudaError_t TltGreedyPack(const float* logits, int64_t rows, int64_t vocab, double* packed,
                          int64_t packed_stride, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (vocab < 1 || vocab > INT_MAX || packed_stride < rows) return cudaErrorInvalidValue;
  GreedyPackKernel<<<static_cast<unsigned>(rows), 1024, 0, stream>>>(
      logits, nullptr, static_cast<int>(vocab), vocab, packed, packed_stride);
  return cudaGetLastError();
}

}  // extern "C"
