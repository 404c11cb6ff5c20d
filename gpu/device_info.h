// Attributes of the current CUDA device that kernel launchers need, queried once per device and
// cached (host code; thread-safe). Used by the gpu/ launchers to size grids and shared memory.
#pragma once

#include <cuda_runtime_api.h>

#include <mutex>

namespace tlt_gpu {

struct DeviceInfo {
  int sms = 0;            // streaming multiprocessors (at least 1)
  int smem_optin = 0;     // shared memory a block may opt into (at least 48 KiB)
  int smem_per_sm = 0;    // shared memory per multiprocessor
  int compute_major = 0;  // compute capability major version (0: unknown)
};

inline DeviceInfo CurrentDevice() {
  static std::mutex mu;
  static DeviceInfo cache[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64)
    return DeviceInfo{1, 48 * 1024, 0, 0};
  std::lock_guard<std::mutex> lock(mu);
  DeviceInfo& d = cache[dev];
  if (d.sms == 0) {
    cudaDeviceGetAttribute(&d.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    cudaDeviceGetAttribute(&d.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    cudaDeviceGetAttribute(&d.compute_major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, dev);
    if (d.smem_optin <= 0) d.smem_optin = 48 * 1024;
    if (d.sms <= 0) d.sms = 1;
  }
  return d;
}

}  // namespace tlt_gpu
