// Programmatic dependent launch (PDL, compute capability >= 9.0) for the decode kernels.
//
// A decode step is a chain of small kernels, each of which reads what the previous one wrote.
// Launched with LaunchDependent(), a kernel may start while its predecessor is still finishing:
// its blocks get resident, read what does not depend on the predecessor (weights, into L2), and
// then call WaitForPredecessor(), which returns once the predecessor grid has completed and its
// writes are visible. Every kernel launched this way must call WaitForPredecessor() before it
// reads any activation or writes any memory. AllowDependents() lets the next kernel start early.
// Rule: a kernel calls AllowDependents() only after its own WaitForPredecessor() (every block).
// Then a kernel that has started knows that all kernels two or more launches back have
// finished, which the attention kernel relies on to read the KV cache before its wait
// (gpu/decode_attention.cu).
// CUDA graph capture keeps these as programmatic edges. On older devices, or with the
// environment variable TLT_PDL=0, LaunchDependent() is an ordinary launch and the device calls
// are no-ops.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace tlt_gpu {

__device__ __forceinline__ void WaitForPredecessor() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void AllowDependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether the current device supports PDL and TLT_PDL is not "0" (checked once per device).
inline bool DependentLaunchEnabled() {
  static std::mutex mu;
  static signed char cache[64] = {0};  // 0 unknown, 1 yes, -1 no
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
  std::lock_guard<std::mutex> lock(mu);
  if (cache[dev] == 0) {
    int major = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    const char* env = std::getenv("TLT_PDL");
    const bool off = env != nullptr && std::strcmp(env, "0") == 0;
    cache[dev] = (major >= 9 && !off) ? 1 : -1;
  }
  return cache[dev] > 0;
}

template <typename... KernelArgs, typename... Args>
cudaError_t LaunchDependent(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem,
                            cudaStream_t stream, Args... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = DependentLaunchEnabled() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, static_cast<KernelArgs>(args)...);
}

}  // namespace tlt_gpu
