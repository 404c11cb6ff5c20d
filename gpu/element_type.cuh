// Element-type conversions and warp reductions shared by the gpu/ kernels (device-only).
//
// The kernels are templates over the storage type T (float, __nv_bfloat16 or __half) and
// compute in float: ToFloat<T> widens a stored value, FromFloat<T> narrows a float to T with
// round-to-nearest-even, and Round<T> does both, which is the rounding an eager LibTorch op
// in T applies to its result. Only these three element types are defined.
// WarpSum and WarpMax reduce across the 32 lanes of a full warp (all lanes must call them) and
// return the result in every lane.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace tlt_gpu {

template <typename T>
__device__ __forceinline__ float ToFloat(T x);
template <>
__device__ __forceinline__ float ToFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ float ToFloat<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <>
__device__ __forceinline__ float ToFloat<__half>(__half x) {
  return __half2float(x);
}

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) {
  return __float2half(x);
}

// Rounds a float to T and back (the rounding an eager op in T applies).
template <typename T>
__device__ __forceinline__ float Round(float x) {
  return ToFloat<T>(FromFloat<T>(x));
}

// Sum of `v` over the 32 lanes of a full warp, in every lane (xor butterfly).
__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Maximum of `v` over the 32 lanes of a full warp, in every lane.
__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace tlt_gpu
