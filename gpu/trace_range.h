// TraceRange: a named NVTX range around a stretch of host code (RAII), so that profilers
// (Nsight Systems timelines, Nsight Compute's --nvtx-include filters) can attribute the GPU
// work launched inside it, CUDA graph replays included, to a phase such as "tlt_verify".
//
// Header-only: NVTX 3 ships with the CUDA toolkit as headers and loads a profiler's injection
// library only when one is attached, so an unprofiled run pays one branch per range. Builds
// without the toolkit's headers on their include path get an empty range.
#pragma once

#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define TLT_HAVE_NVTX 1
#endif

namespace tlt::gpu {

class TraceRange {
 public:
  // `name` must outlive the range (a string literal).
  explicit TraceRange(const char* name) {
#ifdef TLT_HAVE_NVTX
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  ~TraceRange() {
#ifdef TLT_HAVE_NVTX
    nvtxRangePop();
#endif
  }
  TraceRange(const TraceRange&) = delete;
  TraceRange& operator=(const TraceRange&) = delete;
};

}  // namespace tlt::gpu
