// Decode attention (flash-decoding), see TltDecodeAttention in decode_kernels.h.
//
// Grid (B, KV x slices, S): block (b, y, s) takes G query heads of one kv head (all H / KV of
// them, or one when the batch is small: `slices`) over one chunk of keys of row b. The chunking
// is decided in the kernel from the row's length, so one captured graph serves every length:
// a row of n_tiles tiles uses ceil(n_tiles / per_split) chunks of per_split = max(min_tiles,
// ceil(n_tiles / S)) tiles; blocks past the last chunk return at once. With one chunk the block
// writes the output; otherwise every chunk writes its partial result (unnormalized sum, max,
// denominator) and the last block of the row to finish (a ticket counter) combines them.
//
// Within a block (4 warps), keys go through shared memory in tiles of TK keys with cp.async,
// two tiles in flight: the copies of the first two tiles are issued before the block waits for
// the previous kernel (a fused decode step reads only keys that earlier steps wrote; the new
// key and value, which this kernel writes, are read from a shared-memory copy instead of the
// tile). Per tile: groups of
// 8 lanes score one key against the G queries (shared-memory reads without bank conflicts:
// rows padded by 32 bytes); one warp per head updates the running max and sum; warps then
// accumulate the weighted values: KS warps split the tile's keys and 4 / KS own the heads, with
// KS as large as the per-lane accumulators allow (4 for head_dim 64 at any G), so short tiles
// are not a serial chain in one warp. Per-head loops are bounded at compile time by G rounded
// up to a power of two (kGroup).
//
// Measured on an H200 (bench/decode_kernels_bench, Qwen2-0.5B shapes, batch 1, 200 keys): 9.7 us
// a call inside a graph, against 19.3 us for the previous kernel (a thread per key, values read
// from global memory in the sum, a separate combine kernel).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "gpu/decode_kernels.h"
#include "gpu/dependent_launch.cuh"
#include "gpu/device_info.h"
#include "gpu/element_type.cuh"

namespace {

using tlt_gpu::FromFloat;
using tlt_gpu::Round;
using tlt_gpu::ToFloat;
using tlt_gpu::WarpMax;
using tlt_gpu::WarpSum;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxGroup = 16;
constexpr int kMaxHeadDim = 256;
constexpr int kKeyLanes = 8;                        // lanes that score one key together
constexpr int kKeysPerPass = kThreads / kKeyLanes;  // 16 keys scored at once

// Two consecutive elements (p even-aligned) as floats.
__device__ __forceinline__ float2 LoadPair(const float* p) {
  return *reinterpret_cast<const float2*>(p);
}
__device__ __forceinline__ float2 LoadPair(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}
__device__ __forceinline__ float2 LoadPair(const __half* p) {
  return __half22float2(*reinterpret_cast<const __half2*>(p));
}

// Asynchronous global -> shared copies (sm_80+; a plain copy before).
template <int kBytes>
__device__ __forceinline__ void CopyAsync(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  if constexpr (kBytes == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem));
  }
#else
  if constexpr (kBytes == 16) {
    *static_cast<uint4*>(smem) = *static_cast<const uint4*>(gmem);
  } else {
    *static_cast<uint32_t*>(smem) = *static_cast<const uint32_t*>(gmem);
  }
#endif
}
__device__ __forceinline__ void CommitCopies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most `kPending` committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void WaitCopies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
#endif
}

struct Params {
  const void* q;
  const void* cos;
  const void* sin;
  void* k_cache;
  void* v_cache;
  const int64_t* positions;
  const int64_t* tree_base;
  const int64_t* tree_mask;
  const int64_t* slots;
  float* part_acc;  // [B, H, S, D]
  float* part_ml;   // [B, H, S, 2]
  int* counters;    // [B, gridDim.y]
  void* out;
  int H, KV, D;
  int64_t max_length;
  int tile;          // TK keys per tile
  int row_stride;    // elements between key rows in a shared tile (D + padding)
  int region_bytes;  // tile buffers, reused for the final reductions; a multiple of 16
  int min_tiles;     // tiles per chunk at least
  int key_shares;    // KS: warps that split a tile's keys in the value sum (4 / KS own heads)
  bool vec16;        // K/V rows copied in 16-byte pieces (D * element size % 16 == 0, caches
                     // 16-byte aligned); else 4-byte pieces
  float scale;
};

// kPairs: element pairs per lane in the value sum (ceil(D / 64)); a lane keeps up to
// kAcc / kPairs heads x kPairs pairs of accumulators. kGroup: G rounded up to a power of two,
// the bound of every per-head loop (a loop over 16 heads with G = 1 issued 16x the
// instructions: Nsight Compute showed the kernel issue-bound, 2026-11-28).
constexpr int kAcc = 16;

template <typename T, int kPairs, int kGroup>
__global__ void __launch_bounds__(kThreads) AttentionKernel(const Params a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int b = blockIdx.x, split = blockIdx.z, S = gridDim.z;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int slices = gridDim.y / a.KV;
  const int kvh = blockIdx.y / slices;
  const int G = a.H / a.KV / slices;
  const int h0 = kvh * (a.H / a.KV) + (blockIdx.y % slices) * G;
  const int D = a.D, P = D / 2, TK = a.tile, RS = a.row_stride;
  const int64_t slot = a.slots[b];
  T* out = static_cast<T*>(a.out);
  if (slot < 0 || a.positions[b] < 0) {  // padding row (or no position): zeros
    tlt_gpu::WaitForPredecessor();
    tlt_gpu::AllowDependents();
    if (split == 0) {
      for (int idx = tid; idx < G * D; idx += kThreads) {
        out[(static_cast<int64_t>(b) * a.H + h0) * D + idx] = FromFloat<T>(0.f);
      }
    }
    return;
  }
  const int64_t pos = a.positions[b], L = pos + 1;
  const int n_tiles = static_cast<int>((L + TK - 1) / TK);
  const int per_split = max(a.min_tiles, (n_tiles + S - 1) / S);
  const int used = (n_tiles + per_split - 1) / per_split;
  if (split >= used) return;  // a chunk past the row's length (touches no memory)
  const int64_t begin = static_cast<int64_t>(split) * per_split * TK;
  const int64_t end = min(L, begin + static_cast<int64_t>(per_split) * TK);
  const int tiles = static_cast<int>((end - begin + TK - 1) / TK);
  const bool fused = a.cos != nullptr;  // rotary + cache write here (no tree rows)
  const bool writes = fused && pos >= begin && pos < end;

  // Shared memory: [2 buffers][K, V][TK][RS] elements (region_bytes), then q (float [G][D]),
  // scores (float [G][TK]), the new key and value (T [2][D4]), running max / sum / rescale
  // (float [3][16]) and a flag.
  T* tile_mem = reinterpret_cast<T*>(smem_raw);
  const int tile_elems = TK * RS;
  const int D4 = (D + 3) / 4 * 4;
  float* qs = reinterpret_cast<float*>(smem_raw + a.region_bytes);
  float* sc = qs + G * D;
  T* k_new = reinterpret_cast<T*>(sc + G * TK);
  T* v_new = k_new + D4;
  float* m = reinterpret_cast<float*>(v_new + D4);
  float* l = m + kMaxGroup;
  float* alpha = l + kMaxGroup;
  int* last_flag = reinterpret_cast<int*>(alpha + kMaxGroup);

  const int64_t stride = static_cast<int64_t>(a.KV) * D;  // between positions in the cache
  const T* kbase = static_cast<const T*>(a.k_cache) + slot * a.max_length * stride + kvh * D;
  const T* vbase = static_cast<const T*>(a.v_cache) + slot * a.max_length * stride + kvh * D;
  const bool vec16 = a.vec16;
  auto issue = [&](int t) {  // tile t of the chunk into buffer t % 2 (one commit group)
    if (t < tiles) {
      const int64_t k0 = begin + static_cast<int64_t>(t) * TK;
      const int n = static_cast<int>(min(static_cast<int64_t>(TK), end - k0));
      T* kt = tile_mem + (t % 2) * 2 * tile_elems;
      const int per = (vec16 ? 16 : 4) / static_cast<int>(sizeof(T));
      const int chunks = D / per, row_chunks = n * chunks;
      for (int idx = tid; idx < 2 * row_chunks; idx += kThreads) {
        const int which = idx >= row_chunks, r = idx - which * row_chunks;
        const int key = r / chunks, c = r - key * chunks;
        const T* src = (which ? vbase : kbase) + (k0 + key) * stride + c * per;
        T* dst = kt + which * tile_elems + key * RS + c * per;
        if (vec16) {
          CopyAsync<16>(dst, src);
        } else {
          CopyAsync<4>(dst, src);
        }
      }
    }
    CommitCopies();  // possibly empty: one group per tile
  };
  // A fused step reads only keys written by earlier steps (the new one comes from k_new /
  // v_new below): start the copies while the previous kernel finishes. Tree rows read keys
  // that the kernel just before wrote.
  if (fused) {
    issue(0);
    issue(1);
  }
  tlt_gpu::WaitForPredecessor();
  tlt_gpu::AllowDependents();
  if (!fused) {
    issue(0);
    issue(1);
  }

  const T* q = static_cast<const T*>(a.q);
  if (!fused) {
    for (int idx = tid; idx < G * D; idx += kThreads) {
      qs[idx] = ToFloat<T>(q[(static_cast<int64_t>(b) * a.H + h0) * D + idx]) * a.scale;
    }
  } else {
    // q is the q/k/v projection: rotate this block's queries; the chunk holding the new
    // position also rotates the new key and writes key and value to the cache.
    const T* row = q + static_cast<int64_t>(b) * (a.H + 2 * a.KV) * D;
    const T* c = static_cast<const T*>(a.cos) + pos * D;
    const T* sn = static_cast<const T*>(a.sin) + pos * D;
    const int heads = G + (writes ? 1 : 0);
    T* kc = static_cast<T*>(a.k_cache) + (slot * a.max_length + pos) * stride + kvh * D;
    for (int idx = tid; idx < heads * P; idx += kThreads) {
      const int g = idx / P, i = idx - g * P;
      const int head = g < G ? h0 + g : a.H + kvh;
      const float x1 = ToFloat<T>(row[head * D + i]), x2 = ToFloat<T>(row[head * D + i + P]);
      const float o1 =
          Round<T>(Round<T>(x1 * ToFloat<T>(c[i])) + Round<T>(-x2 * ToFloat<T>(sn[i])));
      const float o2 =
          Round<T>(Round<T>(x2 * ToFloat<T>(c[i + P])) + Round<T>(x1 * ToFloat<T>(sn[i + P])));
      if (g < G) {
        qs[g * D + i] = o1 * a.scale;
        qs[g * D + i + P] = o2 * a.scale;
      } else {
        k_new[i] = kc[i] = FromFloat<T>(o1);
        k_new[i + P] = kc[i + P] = FromFloat<T>(o2);
      }
    }
    if (writes) {
      T* vc = static_cast<T*>(a.v_cache) + (slot * a.max_length + pos) * stride + kvh * D;
      for (int d = tid; d < D; d += kThreads) v_new[d] = vc[d] = row[(a.H + a.KV + kvh) * D + d];
    }
  }
  if (tid < G) {
    m[tid] = -FLT_MAX;
    l[tid] = 0.f;
  }
  // Tree rows: keys [base, L - 1) are visible where their bit of `visible` is set.
  const int64_t base = a.tree_base != nullptr ? a.tree_base[b] : -1;
  const uint64_t visible = base >= 0 ? static_cast<uint64_t>(a.tree_mask[b]) : 0;

  // Value sum: KS warps share the keys of a tile, WG = 4 / KS warps own heads gw, gw + WG, ...
  const int KS = a.key_shares, WG = kWarps / KS;
  const int gw = warp % WG, kl = warp / WG;
  constexpr int kHeadsPerWarp = kGroup < kAcc / kPairs ? kGroup : kAcc / kPairs;
  float acc[kHeadsPerWarp][kPairs][2];
#pragma unroll
  for (int i = 0; i < kHeadsPerWarp; ++i) {
#pragma unroll
    for (int c = 0; c < kPairs; ++c) acc[i][c][0] = acc[i][c][1] = 0.f;
  }
  const int grp = tid / kKeyLanes, sub = tid % kKeyLanes;

  for (int t = 0; t < tiles; ++t) {
    if (t == 0) {
      WaitCopies<1>();  // tile 0 has landed; tile 1 may be in flight
    } else {
      WaitCopies<0>();  // tile t, issued at the top of the last iteration
    }
    __syncthreads();           // tile t visible; everyone is done with tile t - 1
    if (t >= 1) issue(t + 1);  // into the buffer of tile t - 1
    const int64_t k0 = begin + static_cast<int64_t>(t) * TK;
    const int n = static_cast<int>(min(static_cast<int64_t>(TK), end - k0));
    const T* kt = tile_mem + (t % 2) * 2 * tile_elems;
    const T* vt = kt + tile_elems;
    const int fresh = writes ? static_cast<int>(pos - k0) : -1;  // the new key's row, if here
    // Scores: 8 lanes per key, 16 keys per pass.
    for (int j = grp; j < TK; j += kKeysPerPass) {
      float dots[kGroup];
#pragma unroll
      for (int g = 0; g < kGroup; ++g) dots[g] = 0.f;
      if (j < n) {
        const T* krow = j == fresh ? k_new : kt + j * RS;
#pragma unroll 4
        for (int p = sub; p < P; p += kKeyLanes) {
          const float2 kv = LoadPair(krow + 2 * p);
#pragma unroll
          for (int g = 0; g < kGroup; ++g) {
            if (g < G) {
              const float2 qv = *reinterpret_cast<const float2*>(qs + g * D + 2 * p);
              dots[g] += qv.x * kv.x + qv.y * kv.y;
            }
          }
        }
      }
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        if (g < G) {
#pragma unroll
          for (int o = kKeyLanes / 2; o > 0; o >>= 1) {
            dots[g] += __shfl_xor_sync(0xffffffffu, dots[g], o);
          }
        }
      }
      if (sub == 0 && j < n) {
        const int64_t key = k0 + j;
        const bool masked = base >= 0 && key >= base && key < L - 1 &&
                            (key - base >= 64 || ((visible >> (key - base)) & 1u) == 0);
#pragma unroll
        for (int g = 0; g < kGroup; ++g) {
          if (g < G) sc[g * TK + j] = masked ? -FLT_MAX : dots[g];
        }
      }
    }
    __syncthreads();
    // Online softmax: one warp per head.
    for (int g = warp; g < G; g += kWarps) {
      float mx = -FLT_MAX;
      for (int j = lane; j < n; j += 32) mx = fmaxf(mx, sc[g * TK + j]);
      mx = WarpMax(mx);
      const float m_new = fmaxf(m[g], mx);
      float sum = 0.f;
      for (int j = lane; j < n; j += 32) {
        const float s = sc[g * TK + j];
        const float p = s > -FLT_MAX ? __expf(s - m_new) : 0.f;  // 0: masked
        sc[g * TK + j] = p;
        sum += p;
      }
      sum = WarpSum(sum);
      if (lane == 0) {
        const float r = __expf(m[g] - m_new);
        alpha[g] = r;
        l[g] = l[g] * r + sum;
        m[g] = m_new;
      }
    }
    __syncthreads();
    // Weighted values: lane owns element pairs lane, lane + 32, ... of its heads.
#pragma unroll
    for (int i = 0; i < kHeadsPerWarp; ++i) {
      const int g = gw + i * WG;
      if (g < G) {
        const float r = alpha[g];
#pragma unroll
        for (int c = 0; c < kPairs; ++c) acc[i][c][0] *= r, acc[i][c][1] *= r;
      }
    }
#pragma unroll 2
    for (int j = kl; j < n; j += KS) {
      const T* vrow = j == fresh ? v_new : vt + j * RS;
      float2 v[kPairs];
#pragma unroll
      for (int c = 0; c < kPairs; ++c) {
        const int p = lane + 32 * c;
        v[c] = p < P ? LoadPair(vrow + 2 * p) : make_float2(0.f, 0.f);
      }
#pragma unroll
      for (int i = 0; i < kHeadsPerWarp; ++i) {
        const int g = gw + i * WG;
        if (g < G) {
          const float pr = sc[g * TK + j];
#pragma unroll
          for (int c = 0; c < kPairs; ++c) {
            acc[i][c][0] += pr * v[c].x;
            acc[i][c][1] += pr * v[c].y;
          }
        }
      }
    }
  }
  WaitCopies<0>();
  __syncthreads();  // tile buffers free: reused below

  // Sum the key shares: red [KS][G][D] floats over the tile buffers.
  float* red = reinterpret_cast<float*>(tile_mem);
#pragma unroll
  for (int i = 0; i < kHeadsPerWarp; ++i) {
    const int g = gw + i * WG;
    if (g < G) {
#pragma unroll
      for (int c = 0; c < kPairs; ++c) {
        const int p = lane + 32 * c;
        if (p < P) {
          *reinterpret_cast<float2*>(red + (kl * G + g) * D + 2 * p) =
              make_float2(acc[i][c][0], acc[i][c][1]);
        }
      }
    }
  }
  __syncthreads();
  if (used == 1) {
    for (int idx = tid; idx < G * D; idx += kThreads) {
      const int g = idx / D;
      float s = 0.f;
      for (int k = 0; k < KS; ++k) s += red[k * G * D + idx];
      out[(static_cast<int64_t>(b) * a.H + h0) * D + idx] = FromFloat<T>(s / l[g]);
    }
    return;
  }
  for (int idx = tid; idx < G * D; idx += kThreads) {
    const int g = idx / D, d = idx - g * D;
    float s = 0.f;
    for (int k = 0; k < KS; ++k) s += red[k * G * D + idx];
    a.part_acc[((static_cast<int64_t>(b) * a.H + h0 + g) * S + split) * D + d] = s;
  }
  if (tid < G) {
    float* ml = a.part_ml + ((static_cast<int64_t>(b) * a.H + h0 + tid) * S + split) * 2;
    ml[0] = m[tid];
    ml[1] = l[tid];
  }
  // The last chunk of the row to finish combines (its ticket is used - 1) and resets the
  // counter for the next call.
  __threadfence();
  __syncthreads();
  int* counter = a.counters + static_cast<int64_t>(b) * gridDim.y + blockIdx.y;
  if (tid == 0) *last_flag = atomicAdd(counter, 1) == used - 1;
  __syncthreads();
  if (*last_flag == 0) return;
  __threadfence();
  // Chunk weights w[g][s] = exp(m_s - M) / sum_s exp(m_s - M) l_s, in shared memory (red).
  float* w = red;
  const int64_t bh0 = static_cast<int64_t>(b) * a.H + h0;
  for (int idx = tid; idx < G * used; idx += kThreads) {
    const int g = idx / used, s = idx - g * used;
    const float2 ml = __ldcg(reinterpret_cast<const float2*>(a.part_ml + ((bh0 + g) * S + s) * 2));
    w[2 * idx] = ml.x;
    w[2 * idx + 1] = ml.y;
  }
  __syncthreads();
  if (tid < G) {
    float M = -FLT_MAX;
    for (int s = 0; s < used; ++s) M = fmaxf(M, w[2 * (tid * used + s)]);
    float den = 0.f;
    for (int s = 0; s < used; ++s) {
      const float ls = w[2 * (tid * used + s) + 1];
      den += ls > 0.f ? __expf(w[2 * (tid * used + s)] - M) * ls : 0.f;
    }
    for (int s = 0; s < used; ++s) {
      const int e = 2 * (tid * used + s);
      w[e] = w[e + 1] > 0.f && den > 0.f ? __expf(w[e] - M) / den : 0.f;  // 0: all masked
    }
  }
  __syncthreads();
  for (int idx = tid; idx < G * D; idx += kThreads) {
    const int g = idx / D, d = idx - g * D;
    const float* acc_g = a.part_acc + (bh0 + g) * S * D + d;
    float o = 0.f;
#pragma unroll 8
    for (int s = 0; s < used; ++s) o += w[2 * (g * used + s)] * __ldcg(acc_g + s * D);
    out[(bh0 + g) * D + d] = FromFloat<T>(o);
  }
  if (tid == 0) *counter = 0;
}

// The launch shape of one call, shared by the workspace size and the launch.
struct Plan {
  int64_t slices = 1, splits = 1;
  int tile = 64, row_stride = 0, min_tiles = 1, group = 1, region_bytes = 0;
  int pairs = 1;       // kPairs: element pairs per lane in the value sum
  int key_shares = 4;  // KS
  size_t smem = 0;
};

Plan MakePlan(int64_t B, int64_t H, int64_t KV, int64_t D, int64_t max_length, int64_t elem_bytes) {
  Plan p;
  // Fewer than 64 (row, kv head) pairs: one block per query head instead of per kv head.
  p.slices = B * KV < 64 ? H / KV : 1;
  p.group = static_cast<int>(H / KV / p.slices);
  // Rows padded by 32 bytes (8 banks) so that the four 8-lane key groups of a warp read
  // different banks; 16-byte aligned for the copies.
  const int64_t align = 16 / elem_bytes;
  p.row_stride = static_cast<int>((D + align - 1) / align * align + 32 / elem_bytes);
  p.tile = 64;
  while (p.tile > kKeysPerPass && 4 * p.tile * p.row_stride * elem_bytes > 40 * 1024) p.tile /= 2;
  // Chunks of >= 128 keys below 16 kv rows, >= 256 below 264, >= 512 above; about two blocks
  // per SM (264) at small batches, at most 64 chunks a row.
  const int64_t rows = std::max<int64_t>(1, B * KV);
  const int64_t min_keys = rows < 16 ? 128 : (rows < 264 ? 256 : 512);
  p.min_tiles = static_cast<int>(std::max<int64_t>(1, min_keys / p.tile));
  const int64_t target = std::max<int64_t>(1, (264 + rows - 1) / rows);
  const int64_t by_length = (max_length + min_keys - 1) / min_keys;
  p.splits = std::max<int64_t>(1, std::min<int64_t>({64, by_length, rows < 264 ? target : 64}));
  // Value sum: as many warps as possible share the keys, as long as each lane's accumulators
  // (heads it owns x kPairs) fit in kAcc.
  p.pairs = D <= 64 ? 1 : (D <= 128 ? 2 : 4);
  p.key_shares = kWarps;
  while (p.key_shares > 1 &&
         (p.group + kWarps / p.key_shares - 1) / (kWarps / p.key_shares) > kAcc / p.pairs) {
    p.key_shares /= 2;
  }
  const size_t tiles = 4 * static_cast<size_t>(p.tile) * p.row_stride * elem_bytes;
  const size_t reduce = std::max<size_t>(static_cast<size_t>(p.key_shares) * p.group * D,
                                         2 * static_cast<size_t>(p.group) * p.splits) *
                        sizeof(float);
  p.region_bytes = static_cast<int>((std::max(tiles, reduce) + 15) / 16 * 16);
  const size_t rest = (static_cast<size_t>(p.group) * (D + p.tile)) * sizeof(float) +
                      2 * ((D + 3) / 4 * 4) * elem_bytes + 3 * kMaxGroup * sizeof(float) + 16;
  p.smem = p.region_bytes + rest;
  return p;
}

int SmemOptIn() { return tlt_gpu::CurrentDevice().smem_optin; }

template <typename T, int kPairs, int kGroup>
cudaError_t LaunchShape(const Params& args, const Plan& plan, int64_t B, cudaStream_t stream) {
  auto kernel = AttentionKernel<T, kPairs, kGroup>;
  if (plan.smem > 48 * 1024) {
    if (plan.smem > static_cast<size_t>(SmemOptIn())) return cudaErrorInvalidValue;
    const cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, SmemOptIn());
    if (e != cudaSuccess) return e;
  }
  const dim3 grid(static_cast<unsigned>(B), static_cast<unsigned>(args.KV * plan.slices),
                  static_cast<unsigned>(plan.splits));
  return tlt_gpu::LaunchDependent(kernel, grid, dim3(kThreads), plan.smem, stream, args);
}

template <typename T, int kPairs>
cudaError_t LaunchPairs(const Params& args, const Plan& plan, int64_t B, cudaStream_t stream) {
  if (plan.group <= 1) return LaunchShape<T, kPairs, 1>(args, plan, B, stream);
  if (plan.group <= 2) return LaunchShape<T, kPairs, 2>(args, plan, B, stream);
  if (plan.group <= 4) return LaunchShape<T, kPairs, 4>(args, plan, B, stream);
  if (plan.group <= 8) return LaunchShape<T, kPairs, 8>(args, plan, B, stream);
  return LaunchShape<T, kPairs, 16>(args, plan, B, stream);
}

template <typename T>
cudaError_t Launch(const Params& args, const Plan& plan, int64_t B, cudaStream_t stream) {
  switch (plan.pairs) {
    case 1:
      return LaunchPairs<T, 1>(args, plan, B, stream);
    case 2:
      return LaunchPairs<T, 2>(args, plan, B, stream);
    default:
      return LaunchPairs<T, 4>(args, plan, B, stream);
  }
}

}  // namespace

extern "C" {

int64_t TltDecodeAttentionWorkspaceBytes(int64_t batch, int64_t num_heads, int64_t num_kv_heads,
                                         int64_t head_dim, int64_t max_length) {
  // The split count does not depend on the element type.
  const int64_t splits = MakePlan(batch, num_heads, num_kv_heads, head_dim, max_length, 2).splits;
  return batch * num_heads * splits * (head_dim + 2) * static_cast<int64_t>(sizeof(float));
}

int64_t TltDecodeAttentionCounterCount(int64_t batch, int64_t num_heads) {
  return batch * num_heads;
}

cudaError_t TltDecodeAttention(int dtype, const void* q, const void* cos, const void* sin,
                               void* k_cache, void* v_cache, const int64_t* positions,
                               const int64_t* tree_base, const int64_t* tree_mask,
                               const int64_t* slots, void* out, float* workspace, int* counters,
                               int64_t batch, int64_t num_heads, int64_t num_kv_heads,
                               int64_t head_dim, int64_t max_length, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  if (head_dim > kMaxHeadDim || head_dim % 2 != 0 || num_kv_heads <= 0 ||
      num_heads % num_kv_heads != 0 || num_heads / num_kv_heads > kMaxGroup ||
      (tree_base != nullptr) != (tree_mask != nullptr) ||
      (tree_base != nullptr && cos != nullptr) || counters == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (dtype != kTltFloat32 && dtype != kTltBFloat16 && dtype != kTltFloat16) {
    return cudaErrorInvalidValue;
  }
  const int64_t elem_bytes = dtype == kTltFloat32 ? 4 : 2;
  const Plan plan = MakePlan(batch, num_heads, num_kv_heads, head_dim, max_length, elem_bytes);
  Params args{};
  args.q = q;
  args.cos = cos;
  args.sin = sin;
  args.k_cache = k_cache;
  args.v_cache = v_cache;
  args.positions = positions;
  args.tree_base = tree_base;
  args.tree_mask = tree_mask;
  args.slots = slots;
  args.part_acc = workspace;
  args.part_ml = workspace + batch * num_heads * plan.splits * head_dim;
  args.counters = counters;
  args.out = out;
  args.H = static_cast<int>(num_heads);
  args.KV = static_cast<int>(num_kv_heads);
  args.D = static_cast<int>(head_dim);
  args.max_length = max_length;
  args.tile = plan.tile;
  args.row_stride = plan.row_stride;
  args.region_bytes = plan.region_bytes;
  args.min_tiles = plan.min_tiles;
  args.key_shares = plan.key_shares;
  args.vec16 = (head_dim * elem_bytes) % 16 == 0 &&
               reinterpret_cast<uintptr_t>(k_cache) % 16 == 0 &&
               reinterpret_cast<uintptr_t>(v_cache) % 16 == 0;
  args.scale = 1.f / sqrtf(static_cast<float>(head_dim));
  cudaError_t e = cudaSuccess;
  switch (dtype) {
    case kTltFloat32:
      e = Launch<float>(args, plan, batch, stream);
      break;
    case kTltBFloat16:
      e = Launch<__nv_bfloat16>(args, plan, batch, stream);
      break;
    default:
      e = Launch<__half>(args, plan, batch, stream);
      break;
  }
  return e != cudaSuccess ? e : cudaGetLastError();
}

}  // extern "C"
