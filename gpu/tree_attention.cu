// Tree attention with shared key tiles, see gpu/tree_attention.h.
//
// Grid (row tiles, KV, S). Block (t, kvh, s) takes the rows of tile t (64 / G consecutive rows,
// so at most 64 query vectors: vector v is head v % G of the run's row v / G) for kv head kvh,
// over chunk s of the keys. Its 256 threads are a 16 x 16 grid: thread (ty, tx) owns query
// vectors 4 ty .. 4 ty + 3; in the scores, keys tx + 16 j of the tile; in the value sum,
// head-dim chunks tx + 16 c of four elements. Per key tile (64 keys, K and V in shared memory,
// read once for all the block's vectors): a 64 x 64 score block from register tiles of 4 x 4,
// the tree mask, one warp per 8 vectors for the online softmax, then the weighted values.
//
// Chunks follow the longest row of a run (rows of one slot): n_tiles tiles in chunks of
// max(2, ceil(n_tiles / S)) tiles. With one chunk the block writes the output; otherwise each
// chunk writes its partial (unnormalized sum, max, denominator) and the last block of the
// (tile, kv head) to finish (a ticket counter over the chunks the tile needs) combines them:
// the chunk weights a warp per vector, then the weighted sums a thread per 4 output elements.
// Threads whose 4 vectors are all past the run's (a 4-row drafting step has 16) skip the
// scores and the value sum.
//
// Measured on the H200 (seventh session, before the two-tile chunks, the parallel combine and
// the skipped threads): correct, but slower than TltDecodeAttention below batch 16 of the
// speculative bench (see docs/benchmarks.md); CudaDecoderOptions::tree_attention_shared_keys
// keeps it off.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "gpu/decode_kernels.h"
#include "gpu/device_info.h"
#include "gpu/element_type.cuh"
#include "gpu/tree_attention.h"

namespace {

using tlt_gpu::FromFloat;
using tlt_gpu::WarpMax;
using tlt_gpu::WarpSum;

constexpr int kThreads = 256;
constexpr int kVectors = 64;   // query vectors per block
constexpr int kTileKeys = 64;  // keys per shared-memory tile
constexpr int kScoreStride = kTileKeys + 4;
constexpr int kMaxHeadDim = 128;
constexpr int kMaxSplits = 64;
constexpr int kMinChunkTiles = 2;  // a chunk is at least 128 keys: fewer partials to combine

// Four consecutive elements as floats (16-byte aligned for float, 8-byte for 16-bit types).
__device__ __forceinline__ float4 Load4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ float4 Load4(const __nv_bfloat16* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ float4 Load4(const __half* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&u.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}

// The bits of four elements, for copies.
template <typename T>
struct Four {
  using type = uint2;
};
template <>
struct Four<float> {
  using type = uint4;
};

__device__ __forceinline__ float Dot4(const float4& a, const float4& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}

struct Args {
  const void* q;
  const void* k_cache;
  const void* v_cache;
  const int64_t* positions;
  const int64_t* tree_base;
  const int64_t* tree_mask;
  const int64_t* slots;
  void* out;
  float* part_acc;  // [B, H, S, D]
  float* part_ml;   // [B, H, S, 2]
  int* counters;    // [row tiles, KV]
  int B, H, KV, D, G, rows_per_tile;
  int64_t max_length;
  float scale;
};

// A run: consecutive rows of the tile with one slot (slot -1: padding rows).
struct Run {
  int begin, count, used, unused;
  int64_t slot, keys;
};

__device__ __forceinline__ int ChunkTiles(int64_t keys, int S) {
  const int n_tiles = static_cast<int>((keys + kTileKeys - 1) / kTileKeys);
  return max(kMinChunkTiles, (n_tiles + S - 1) / S);
}

template <typename T, int kChunks>
__global__ void __launch_bounds__(kThreads) TreeAttentionKernel(const Args a) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int D = a.D, G = a.G, H = a.H, S = gridDim.z, split = blockIdx.z, kvh = blockIdx.y;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16, warp = tid / 32, lane = tid % 32;
  const int row0 = blockIdx.x * a.rows_per_tile;
  const int rows = min(a.B - row0, a.rows_per_tile);
  const int KS = D + 4, P4 = D / 4;
  float* qs = reinterpret_cast<float*>(smem);  // [64][D], scaled
  T* ks = reinterpret_cast<T*>(qs + kVectors * D);
  T* vs = ks + kTileKeys * KS;
  float* sc = reinterpret_cast<float*>(vs + kTileKeys * KS);  // [64][kScoreStride]
  float* m = sc + kVectors * kScoreStride;
  float* l = m + kVectors;
  float* alpha = l + kVectors;
  int64_t* pos = reinterpret_cast<int64_t*>(alpha + kVectors);  // the tile's rows
  int64_t* base = pos + kVectors;
  int64_t* mask = base + kVectors;
  int64_t* slot_of = mask + kVectors;
  Run* runs = reinterpret_cast<Run*>(slot_of + kVectors);
  int* flags = reinterpret_cast<int*>(runs + kVectors);  // run count, expected chunks, last
  const T* kc = static_cast<const T*>(a.k_cache);
  const T* vc = static_cast<const T*>(a.v_cache);
  const T* q = static_cast<const T*>(a.q);
  T* out = static_cast<T*>(a.out);
  using Bits = typename Four<T>::type;

  for (int i = tid; i < rows; i += kThreads) {
    const int r = row0 + i;
    pos[i] = a.positions[r];
    base[i] = a.tree_base != nullptr ? a.tree_base[r] : -1;
    mask[i] = a.tree_mask != nullptr ? a.tree_mask[r] : 0;
    slot_of[i] = a.slots[r] < 0 || pos[i] < 0 ? -1 : a.slots[r];
  }
  __syncthreads();
  if (tid == 0) {
    int n = 0, expected = 1;
    for (int r = 0; r < rows;) {
      int e = r + 1;
      while (e < rows && slot_of[e] == slot_of[r]) ++e;
      Run run{r, e - r, 1, 0, slot_of[r], 0};
      if (run.slot >= 0) {
        for (int i = r; i < e; ++i) run.keys = max(run.keys, pos[i] + 1);
        const int n_tiles = static_cast<int>((run.keys + kTileKeys - 1) / kTileKeys);
        const int per = ChunkTiles(run.keys, S);
        run.used = (n_tiles + per - 1) / per;
      }
      expected = max(expected, run.used);
      runs[n++] = run;
      r = e;
    }
    flags[0] = n;
    flags[1] = expected;
  }
  __syncthreads();
  const int n_runs = flags[0], expected = flags[1];
  if (split >= expected) return;

  for (int ri = 0; ri < n_runs; ++ri) {
    const Run run = runs[ri];
    const int nq = run.count * G;
    if (run.slot < 0) {  // padding rows: zeros
      if (split == 0) {
        for (int idx = tid; idx < nq * D; idx += kThreads) {
          const int v = idx / D, d = idx - v * D;
          const int64_t row = row0 + run.begin + v / G;
          out[(row * H + kvh * G + v % G) * D + d] = FromFloat<T>(0.f);
        }
      }
      continue;
    }
    if (split >= run.used) continue;
    const int n_tiles = static_cast<int>((run.keys + kTileKeys - 1) / kTileKeys);
    const int per = ChunkTiles(run.keys, S);
    const int t_begin = split * per, t_end = min(n_tiles, t_begin + per);

    for (int idx = tid; idx < kVectors * P4; idx += kThreads) {
      const int v = idx / P4, c = idx - v * P4;
      float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
      if (v < nq) {
        const int64_t row = row0 + run.begin + v / G;
        x = Load4(q + (row * H + kvh * G + v % G) * D + 4 * c);
        x.x *= a.scale, x.y *= a.scale, x.z *= a.scale, x.w *= a.scale;
      }
      *reinterpret_cast<float4*>(qs + v * D + 4 * c) = x;
    }
    if (tid < kVectors) {
      m[tid] = -FLT_MAX;
      l[tid] = 0.f;
    }
    float4 acc[4][kChunks];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int c = 0; c < kChunks; ++c) acc[i][c] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
    __syncthreads();

    for (int t = t_begin; t < t_end; ++t) {
      const int64_t k0 = static_cast<int64_t>(t) * kTileKeys;
      const int n = static_cast<int>(min(static_cast<int64_t>(kTileKeys), run.keys - k0));
      // K and V of the tile; rows past n are zeros (their weights are 0, and 0 * garbage could
      // be NaN).
      for (int idx = tid; idx < 2 * kTileKeys * P4; idx += kThreads) {
        const int which = idx / (kTileKeys * P4), rest = idx - which * kTileKeys * P4;
        const int key = rest / P4, c = rest - key * P4;
        Bits bits{};
        if (key < n) {
          const T* src = (which ? vc : kc) +
                         ((run.slot * a.max_length + k0 + key) * a.KV + kvh) * D + 4 * c;
          bits = *reinterpret_cast<const Bits*>(src);
        }
        *reinterpret_cast<Bits*>((which ? vs : ks) + key * KS + 4 * c) = bits;
      }
      __syncthreads();
      // Scores: vectors 4 ty + i against keys tx + 16 j.
      float s[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = 0.f;
      }
      const bool active = 4 * ty < nq;  // this thread's vectors exist (a uniform branch per 16)
      for (int c = 0; active && c < P4; ++c) {
        float4 qv[4], kv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          qv[i] = *reinterpret_cast<const float4*>(qs + (4 * ty + i) * D + 4 * c);
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) kv[j] = Load4(ks + (tx + 16 * j) * KS + 4 * c);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
          for (int j = 0; j < 4; ++j) s[i][j] += Dot4(qv[i], kv[j]);
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int v = 4 * ty + i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int key = tx + 16 * j;
          float value = -FLT_MAX;  // masked
          if (v < nq && key < n) {
            const int rr = run.begin + v / G;
            const int64_t k = k0 + key, p = pos[rr], b = base[rr];
            bool visible = k <= p;
            if (visible && b >= 0 && k >= b && k < p) {
              const int64_t bit = k - b;
              visible = bit < 64 && ((static_cast<uint64_t>(mask[rr]) >> bit) & 1u) != 0;
            }
            if (visible) value = s[i][j];
          }
          sc[v * kScoreStride + key] = value;
        }
      }
      __syncthreads();
      // Online softmax, a warp per vector.
      for (int v = warp; v < nq; v += kThreads / 32) {
        float* row = sc + v * kScoreStride;
        const float s0 = row[lane], s1 = row[lane + 32];
        const float m_old = m[v];
        const float m_new = fmaxf(m_old, WarpMax(fmaxf(s0, s1)));
        const float p0 = s0 > -FLT_MAX ? __expf(s0 - m_new) : 0.f;
        const float p1 = s1 > -FLT_MAX ? __expf(s1 - m_new) : 0.f;
        row[lane] = p0;
        row[lane + 32] = p1;
        const float sum = WarpSum(p0 + p1);
        if (lane == 0) {
          const float r = __expf(m_old - m_new);
          alpha[v] = r;
          l[v] = l[v] * r + sum;
          m[v] = m_new;
        }
      }
      __syncthreads();
      // Weighted values.
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (4 * ty + i < nq) {
          const float r = alpha[4 * ty + i];
#pragma unroll
          for (int c = 0; c < kChunks; ++c) {
            acc[i][c].x *= r, acc[i][c].y *= r, acc[i][c].z *= r, acc[i][c].w *= r;
          }
        }
      }
      for (int key = 0; active && key < n; key += 4) {
        float4 p[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          p[i] = 4 * ty + i < nq
                     ? *reinterpret_cast<const float4*>(sc + (4 * ty + i) * kScoreStride + key)
                     : make_float4(0.f, 0.f, 0.f, 0.f);
        }
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          const int chunk = tx + 16 * c;
          if (chunk < P4) {
            const float4 v0 = Load4(vs + (key + 0) * KS + 4 * chunk);
            const float4 v1 = Load4(vs + (key + 1) * KS + 4 * chunk);
            const float4 v2 = Load4(vs + (key + 2) * KS + 4 * chunk);
            const float4 v3 = Load4(vs + (key + 3) * KS + 4 * chunk);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              float4& o = acc[i][c];
              o.x += p[i].x * v0.x + p[i].y * v1.x + p[i].z * v2.x + p[i].w * v3.x;
              o.y += p[i].x * v0.y + p[i].y * v1.y + p[i].z * v2.y + p[i].w * v3.y;
              o.z += p[i].x * v0.z + p[i].y * v1.z + p[i].z * v2.z + p[i].w * v3.z;
              o.w += p[i].x * v0.w + p[i].y * v1.w + p[i].z * v2.w + p[i].w * v3.w;
            }
          }
        }
      }
      __syncthreads();  // the next tile overwrites ks, vs and sc
    }

    // The chunk's result: the output (one chunk) or its partial.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int v = 4 * ty + i;
      if (v >= nq) continue;
      const int64_t bh = (row0 + run.begin + v / G) * static_cast<int64_t>(H) + kvh * G + v % G;
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const int chunk = tx + 16 * c;
        if (chunk >= P4) continue;
        const float4 o = acc[i][c];
        if (run.used == 1) {
          const float inv = l[v] > 0.f ? 1.f / l[v] : 0.f;
          T* dst = out + bh * D + 4 * chunk;
          dst[0] = FromFloat<T>(o.x * inv);
          dst[1] = FromFloat<T>(o.y * inv);
          dst[2] = FromFloat<T>(o.z * inv);
          dst[3] = FromFloat<T>(o.w * inv);
        } else {
          *reinterpret_cast<float4*>(a.part_acc + (bh * S + split) * D + 4 * chunk) = o;
        }
      }
    }
    if (run.used > 1 && tid < nq) {
      const int64_t bh =
          (row0 + run.begin + tid / G) * static_cast<int64_t>(H) + kvh * G + tid % G;
      a.part_ml[(bh * S + split) * 2] = m[tid];
      a.part_ml[(bh * S + split) * 2 + 1] = l[tid];
    }
    __syncthreads();  // the next run reuses qs, m, l
  }
  if (expected == 1) return;

  // The last of the tile's `expected` chunk blocks combines the partials.
  __threadfence();
  __syncthreads();
  int* counter = a.counters + blockIdx.x * gridDim.y + kvh;
  if (tid == 0) flags[2] = atomicAdd(counter, 1) == expected - 1;
  __syncthreads();
  if (flags[2] == 0) return;
  __threadfence();
  // Weights w[v][s] = exp(m_s - M) / sum_s exp(m_s - M) l_s into the scores' shared memory (a
  // warp per vector), then every (vector, 4 elements) sums its chunks with independent loads.
  for (int ri = 0; ri < n_runs; ++ri) {
    const Run run = runs[ri];
    if (run.slot < 0 || run.used == 1) continue;  // uniform: the runs are in shared memory
    const int used = run.used, nq = run.count * G;
    for (int v = warp; v < nq; v += kThreads / 32) {
      const int64_t bh = (row0 + run.begin + v / G) * static_cast<int64_t>(H) + kvh * G + v % G;
      const float* ml = a.part_ml + bh * S * 2;
      const float m0 = lane < used ? __ldcg(ml + 2 * lane) : -FLT_MAX;
      const float l0 = lane < used ? __ldcg(ml + 2 * lane + 1) : 0.f;
      const float m1 = lane + 32 < used ? __ldcg(ml + 2 * (lane + 32)) : -FLT_MAX;
      const float l1 = lane + 32 < used ? __ldcg(ml + 2 * (lane + 32) + 1) : 0.f;
      const float M = WarpMax(fmaxf(m0, m1));
      const float e0 = l0 > 0.f ? __expf(m0 - M) : 0.f, e1 = l1 > 0.f ? __expf(m1 - M) : 0.f;
      const float den = WarpSum(e0 * l0 + e1 * l1);
      float* w = sc + v * kScoreStride;
      if (lane < used) w[lane] = den > 0.f ? e0 / den : 0.f;
      if (lane + 32 < used) w[lane + 32] = den > 0.f ? e1 / den : 0.f;
    }
    __syncthreads();
    for (int idx = tid; idx < nq * P4; idx += kThreads) {
      const int v = idx / P4, chunk = idx - v * P4;
      const int64_t bh = (row0 + run.begin + v / G) * static_cast<int64_t>(H) + kvh * G + v % G;
      const float* part = a.part_acc + bh * S * D + 4 * chunk;
      const float* w = sc + v * kScoreStride;
      float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
      for (int s = 0; s < used; ++s) {
        const float4 x = __ldcg(reinterpret_cast<const float4*>(part + static_cast<int64_t>(s) * D));
        const float ws = w[s];
        o.x += ws * x.x, o.y += ws * x.y, o.z += ws * x.z, o.w += ws * x.w;
      }
      T* dst = out + bh * D + 4 * chunk;
      dst[0] = FromFloat<T>(o.x);
      dst[1] = FromFloat<T>(o.y);
      dst[2] = FromFloat<T>(o.z);
      dst[3] = FromFloat<T>(o.w);
    }
    __syncthreads();  // the next run's weights reuse sc
  }
  if (tid == 0) *counter = 0;
}

struct Plan {
  int rows_per_tile = 1, tiles = 0, splits = 1;
  size_t smem = 0;
};

Plan MakePlan(int64_t B, int64_t H, int64_t KV, int64_t D, int64_t max_length,
              int64_t elem_bytes) {
  Plan p;
  const int64_t G = H / KV;
  p.rows_per_tile = static_cast<int>(std::max<int64_t>(1, kVectors / G));
  p.tiles = static_cast<int>((B + p.rows_per_tile - 1) / p.rows_per_tile);
  // About two blocks per SM over the (tile, kv head) groups, chunks of kMinChunkTiles tiles or
  // more.
  const int64_t groups = std::max<int64_t>(1, p.tiles * KV);
  const int64_t target = (2 * tlt_gpu::CurrentDevice().sms + groups - 1) / groups;
  const int64_t chunk_keys = static_cast<int64_t>(kMinChunkTiles) * kTileKeys;
  const int64_t by_length = (max_length + chunk_keys - 1) / chunk_keys;
  p.splits = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>({kMaxSplits, target, by_length})));
  p.smem = static_cast<size_t>(kVectors) * D * sizeof(float) +
           2 * static_cast<size_t>(kTileKeys) * (D + 4) * elem_bytes +
           static_cast<size_t>(kVectors) * kScoreStride * sizeof(float) +
           3 * kVectors * sizeof(float) + 4 * kVectors * sizeof(int64_t) +
           kVectors * sizeof(Run) + 4 * sizeof(int);
  return p;
}

int64_t ElementBytes(int dtype) { return dtype == kTltFloat32 ? 4 : 2; }

template <typename T>
cudaError_t Launch(const Args& args, const Plan& plan, cudaStream_t stream) {
  auto kernel = args.D <= 64 ? TreeAttentionKernel<T, 1> : TreeAttentionKernel<T, 2>;
  if (plan.smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(plan.smem));
    if (e != cudaSuccess) return e;
  }
  const dim3 grid(static_cast<unsigned>(plan.tiles), static_cast<unsigned>(args.KV),
                  static_cast<unsigned>(plan.splits));
  kernel<<<grid, kThreads, plan.smem, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

int TltTreeAttentionSupported(int dtype, int64_t num_heads, int64_t num_kv_heads,
                              int64_t head_dim) {
  if (dtype != kTltFloat32 && dtype != kTltBFloat16 && dtype != kTltFloat16) return 0;
  if (head_dim < 4 || head_dim > kMaxHeadDim || head_dim % 4 != 0 || num_kv_heads <= 0 ||
      num_heads % num_kv_heads != 0 || num_heads / num_kv_heads > kVectors) {
    return 0;
  }
  const Plan plan = MakePlan(1, num_heads, num_kv_heads, head_dim, 1, ElementBytes(dtype));
  return plan.smem <= static_cast<size_t>(tlt_gpu::CurrentDevice().smem_optin) ? 1 : 0;
}

int64_t TltTreeAttentionWorkspaceBytes(int64_t batch, int64_t num_heads, int64_t num_kv_heads,
                                       int64_t head_dim, int64_t max_length) {
  const int64_t splits = MakePlan(batch, num_heads, num_kv_heads, head_dim, max_length, 2).splits;
  return batch * num_heads * splits * (head_dim + 2) * static_cast<int64_t>(sizeof(float));
}

cudaError_t TltTreeAttention(int dtype, const void* q, const void* k_cache, const void* v_cache,
                             const int64_t* positions, const int64_t* tree_base,
                             const int64_t* tree_mask, const int64_t* slots, void* out,
                             float* workspace, int* counters, int64_t batch, int64_t num_heads,
                             int64_t num_kv_heads, int64_t head_dim, int64_t max_length,
                             cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (!TltTreeAttentionSupported(dtype, num_heads, num_kv_heads, head_dim) || q == nullptr ||
      k_cache == nullptr || v_cache == nullptr || positions == nullptr || slots == nullptr ||
      out == nullptr || workspace == nullptr || counters == nullptr ||
      (tree_base != nullptr) != (tree_mask != nullptr) || !aligned(q) || !aligned(k_cache) ||
      !aligned(v_cache) || !aligned(workspace)) {
    return cudaErrorInvalidValue;
  }
  const Plan plan =
      MakePlan(batch, num_heads, num_kv_heads, head_dim, max_length, ElementBytes(dtype));
  Args args{};
  args.q = q;
  args.k_cache = k_cache;
  args.v_cache = v_cache;
  args.positions = positions;
  args.tree_base = tree_base;
  args.tree_mask = tree_mask;
  args.slots = slots;
  args.out = out;
  args.part_acc = workspace;
  args.part_ml = workspace + batch * num_heads * plan.splits * head_dim;
  args.counters = counters;
  args.B = static_cast<int>(batch);
  args.H = static_cast<int>(num_heads);
  args.KV = static_cast<int>(num_kv_heads);
  args.D = static_cast<int>(head_dim);
  args.G = static_cast<int>(num_heads / num_kv_heads);
  args.rows_per_tile = plan.rows_per_tile;
  args.max_length = max_length;
  args.scale = 1.f / sqrtf(static_cast<float>(head_dim));
  switch (dtype) {
    case kTltFloat32:
      return Launch<float>(args, plan, stream);
    case kTltBFloat16:
      return Launch<__nv_bfloat16>(args, plan, stream);
    default:
      return Launch<__half>(args, plan, stream);
  }
}
