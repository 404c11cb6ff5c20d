// Tensor-core GEMM for few rows (see skinny_gemm.h).
//
// mma.sync.m16n8k16 fragments (PTX ISA), lane = 4 g + t, (row, k) or (k, n) or (row, n):
// - A (16 x 16, row): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..2t+1), a2 = (g, 2t+8..2t+9),
//   a3 = (g+8, 2t+8..2t+9).
// - B (16 x 8, col): b0 = (2t..2t+1, g), b1 = (2t+8..2t+9, g).
// - C (16 x 8): c0, c1 = (g, 2t..2t+1), c2, c3 = (g+8, 2t..2t+1).
// A thread's four k slots {2t, 2t+1, 2t+8, 2t+9} are mapped to the physical k 4t..4t+3 of a
// 16-wide step, in x and in the weight alike (a dot product does not depend on the order of k),
// so one 16-byte load of 8 consecutive elements feeds two mma k-steps: elements 0-3 the first,
// 4-7 the second. A warp step covers 32 k: lane (g, t) loads weight row n0 + g and x rows g,
// g + 8 (of each 16-row tile) at k0 + 8 t.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "gpu/decode_kernels.h"
#include "gpu/dependent_launch.cuh"
#include "gpu/device_info.h"
#include "gpu/element_type.cuh"
#include "gpu/skinny_gemm.h"

namespace {

using tlt_gpu::FromFloat;
using tlt_gpu::ToFloat;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kColumns = 8;  // output columns per block (one mma n-tile)

template <typename T>
__device__ __forceinline__ void Mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                    uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
#else
  __trap();  // compiled for a device without mma.sync bf16/f16 (TltSkinnyGemmSupported refuses)
#endif
}

__device__ __forceinline__ uint4 LoadStreaming(const void* p) {  // read once: weights
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

struct Args {
  const void* x;
  const void* weight;
  const void* bias;
  const void* residual;
  void* out;
  int rows, n, k;
};

// kTiles: 16-row tiles of x (rows <= 16 kTiles).
template <typename T, int kTiles>
__global__ void __launch_bounds__(kThreads) SkinnyGemmKernel(const Args a) {
  __shared__ float partial[kWarps][kTiles * 16][kColumns];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * kColumns;
  const int steps = a.k / 32;
  const T* w_row =
      static_cast<const T*>(a.weight) + static_cast<int64_t>(min(n0 + g, a.n - 1)) * a.k + 8 * t;
  const T* x = static_cast<const T*>(a.x);
  float c[kTiles][4];
#pragma unroll
  for (int i = 0; i < kTiles; ++i) c[i][0] = c[i][1] = c[i][2] = c[i][3] = 0.f;
  tlt_gpu::WaitForPredecessor();  // x (and residual) come from the kernel before
  tlt_gpu::AllowDependents();
#pragma unroll 4
  for (int s = warp; s < steps; s += kWarps) {
    const int k0 = s * 32;
    const uint4 w = LoadStreaming(w_row + k0);
#pragma unroll
    for (int i = 0; i < kTiles; ++i) {
      const int r0 = i * 16 + g, r1 = r0 + 8;
      const uint4 zero = make_uint4(0, 0, 0, 0);
      const uint4 x0 =
          r0 < a.rows
              ? *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r0) * a.k + k0 + 8 * t)
              : zero;
      const uint4 x1 =
          r1 < a.rows
              ? *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r1) * a.k + k0 + 8 * t)
              : zero;
      Mma<T>(c[i], x0.x, x1.x, x0.y, x1.y, w.x, w.y);
      Mma<T>(c[i], x0.z, x1.z, x0.w, x1.w, w.z, w.w);
    }
  }
#pragma unroll
  for (int i = 0; i < kTiles; ++i) {
    partial[warp][i * 16 + g][2 * t] = c[i][0];
    partial[warp][i * 16 + g][2 * t + 1] = c[i][1];
    partial[warp][i * 16 + g + 8][2 * t] = c[i][2];
    partial[warp][i * 16 + g + 8][2 * t + 1] = c[i][3];
  }
  __syncthreads();
  const T* bias = static_cast<const T*>(a.bias);
  const T* residual = static_cast<const T*>(a.residual);
  T* out = static_cast<T*>(a.out);
  for (int idx = threadIdx.x; idx < a.rows * kColumns; idx += kThreads) {
    const int r = idx / kColumns, j = idx % kColumns, col = n0 + j;
    if (col >= a.n) continue;
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += partial[w][r][j];
    if (bias != nullptr) v += ToFloat<T>(bias[col]);
    const int64_t o = static_cast<int64_t>(r) * a.n + col;
    if (residual != nullptr) v += ToFloat<T>(residual[o]);
    out[o] = FromFloat<T>(v);
  }
}

bool Aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, int kTiles>
cudaError_t LaunchTiles(const Args& args, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((args.n + kColumns - 1) / kColumns);
  return tlt_gpu::LaunchDependent(SkinnyGemmKernel<T, kTiles>, dim3(blocks), dim3(kThreads), 0,
                                  stream, args);
}

template <typename T>
cudaError_t LaunchType(const Args& args, cudaStream_t stream) {
  if (args.rows <= 16) return LaunchTiles<T, 1>(args, stream);
  if (args.rows <= 32) return LaunchTiles<T, 2>(args, stream);
  if (args.rows <= 48) return LaunchTiles<T, 3>(args, stream);
  return LaunchTiles<T, 4>(args, stream);
}

}  // namespace

extern "C" {

int TltSkinnyGemmSupported(int dtype, int64_t rows, int64_t n, int64_t k) {
  return (dtype == kTltBFloat16 || dtype == kTltFloat16) && rows >= 1 && rows <= 64 && n >= 1 &&
                 n < (int64_t{1} << 30) && k >= 32 && k % 32 == 0 && k < (int64_t{1} << 30) &&
                 tlt_gpu::CurrentDevice().compute_major >= 8
             ? 1
             : 0;
}

cudaError_t TltSkinnyGemm(const TltSkinnyGemmParams* p, cudaStream_t stream) {
  if (p == nullptr || !TltSkinnyGemmSupported(p->dtype, p->rows, p->n, p->k) || p->x == nullptr ||
      p->weight == nullptr || p->out == nullptr || !Aligned(p->x) || !Aligned(p->weight)) {
    return cudaErrorInvalidValue;
  }
  Args args{p->x,
            p->weight,
            p->bias,
            p->residual,
            p->out,
            static_cast<int>(p->rows),
            static_cast<int>(p->n),
            static_cast<int>(p->k)};
  const cudaError_t e = p->dtype == kTltBFloat16 ? LaunchType<__nv_bfloat16>(args, stream)
                                                 : LaunchType<__half>(args, stream);
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // extern "C"
