// Kernels of the on-device drafting loop (draft_kernels.h).
#include <cfloat>
#include <climits>
#include <cmath>

#include "gpu/draft_kernels.h"

namespace {

constexpr int kMaxK = 16;
constexpr int kTopKThreads = 256;

// (value, id) ordering of the top-k: larger value first, then the smaller id.
__device__ __forceinline__ bool Before(float v, int64_t id, float w, int64_t jd) {
  return v > w || (v == w && id < jd);
}

// One block per row: every thread keeps its own sorted top-k and a running (max, sum of exp)
// over a strided part of the row; the block then merges k times by a (value, id) arg-max.
__global__ void __launch_bounds__(kTopKThreads)
    DraftTopKKernel(const float* __restrict__ logits, int64_t vocab, int k,
                    float* __restrict__ values, int64_t* __restrict__ ids) {
  const int64_t row = blockIdx.x;
  const float* x = logits + row * vocab;
  float best[kMaxK];
  int64_t best_id[kMaxK];
  int count = 0;
  float m = -INFINITY, s = 0.f;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    float v = x[i];
    if (v != v) v = -INFINITY;  // NaN
    if (v > m) {
      s = s * expf(m - v) + 1.f;
      m = v;
    } else if (v > -INFINITY) {
      s += expf(v - m);
    }
    if (count < k || Before(v, i, best[count - 1], best_id[count - 1])) {
      int p = count < k ? count++ : k - 1;  // drop the last when full
      while (p > 0 && Before(v, i, best[p - 1], best_id[p - 1])) {
        best[p] = best[p - 1];
        best_id[p] = best_id[p - 1];
        --p;
      }
      best[p] = v;
      best_id[p] = i;
    }
  }
  // Block (max, sum) for the log-sum-exp.
  __shared__ float red_m[kTopKThreads / 32], red_s[kTopKThreads / 32];
  __shared__ float row_max, log_sum;  // log_softmax(v) = (v - row_max) - log_sum, as LibTorch
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int off = 16; off > 0; off /= 2) {
    const float om = __shfl_xor_sync(0xffffffffu, m, off);
    const float os = __shfl_xor_sync(0xffffffffu, s, off);
    const float nm = fmaxf(m, om);
    s = (m == -INFINITY ? 0.f : s * expf(m - nm)) + (om == -INFINITY ? 0.f : os * expf(om - nm));
    m = nm;
  }
  if (lane == 0) {
    red_m[warp] = m;
    red_s[warp] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float M = -INFINITY, S = 0.f;
    for (int w = 0; w < warps; ++w) M = fmaxf(M, red_m[w]);
    for (int w = 0; w < warps; ++w) {
      if (red_m[w] > -INFINITY) S += red_s[w] * expf(red_m[w] - M);
    }
    row_max = M;
    log_sum = logf(S);
  }
  // k rounds of a block arg-max over each thread's next unused entry.
  __shared__ float win_v[kTopKThreads / 32];
  __shared__ int64_t win_id[kTopKThreads / 32];
  __shared__ int win_thread[kTopKThreads / 32];
  __shared__ int winner;
  int next = 0;
  for (int round = 0; round < k; ++round) {
    float v = next < count ? best[next] : -INFINITY;
    int64_t id = next < count ? best_id[next] : LLONG_MAX;
    int t = threadIdx.x;
    for (int off = 16; off > 0; off /= 2) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, off);
      const int64_t oid = __shfl_xor_sync(0xffffffffu, id, off);
      const int ot = __shfl_xor_sync(0xffffffffu, t, off);
      if (Before(ov, oid, v, id)) {
        v = ov;
        id = oid;
        t = ot;
      }
    }
    __syncthreads();  // the previous round's winner has been read
    if (lane == 0) {
      win_v[warp] = v;
      win_id[warp] = id;
      win_thread[warp] = t;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int w_best = 0;
      for (int w = 1; w < warps; ++w) {
        if (Before(win_v[w], win_id[w], win_v[w_best], win_id[w_best])) w_best = w;
      }
      winner = win_thread[w_best];
      // A row without a finite maximum (all -inf/NaN, or a +inf logit) gives -inf, not NaN, so
      // the expansion's ranking stays a strict order.
      const float lp = (win_v[w_best] - row_max) - log_sum;
      values[row * k + round] = lp == lp ? lp : -INFINITY;
      // All entries exhausted (vocab < k cannot happen: checked on the host).
      ids[row * k + round] = win_id[w_best] == LLONG_MAX ? 0 : win_id[w_best];
    }
    __syncthreads();
    if (threadIdx.x == winner) ++next;
  }
}

// One block per request; thread t < children handles one new candidate.
__global__ void __launch_bounds__(256) DraftExpandKernel(TltDraftExpandParams p) {
  const int64_t b = blockIdx.x;
  const int k = p.k, t = threadIdx.x;
  const int children = p.depth == 0 ? k : k * k;
  const int64_t C = p.capacity;
  double* tokens = p.candidates + b * 3 * C;
  double* parents = tokens + C;
  double* scores = parents + C;
  // Index of the first new candidate: the root, then k at depth 1, then k^2 per depth.
  const int64_t first = p.depth == 0 ? 1 : 1 + k + static_cast<int64_t>(p.depth - 1) * k * k;
  __shared__ double score[kMaxK * kMaxK];
  __shared__ int32_t old_frontier[kMaxK];
  __shared__ int64_t old_mask[kMaxK];
  if (p.depth == 0 && t == 0) {
    tokens[0] = static_cast<double>(p.root_token[b]);
    parents[0] = -1.0;
    scores[0] = 0.0;
  }
  if (p.depth > 0 && t < k) {
    old_frontier[t] = p.frontier[b * k + t];
    old_mask[t] = p.frontier_mask[b * k + t];
  }
  __syncthreads();
  int j = 0;  // the frontier node (source row) of child t
  int64_t src_row = b;
  if (t < children) {
    j = p.depth == 0 ? 0 : t / k;
    const int c = p.depth == 0 ? t : t % k;
    src_row = p.depth == 0 ? b : b * k + j;
    const float v = p.values[src_row * k + c];
    const int64_t parent = p.depth == 0 ? 0 : old_frontier[j];
    score[t] = scores[parent] + static_cast<double>(v);
    tokens[first + t] = static_cast<double>(p.ids[src_row * k + c]);
    parents[first + t] = static_cast<double>(parent);
    scores[first + t] = score[t];
  }
  __syncthreads();
  // Rank among the new candidates (score descending, ties by index); the k best become the
  // frontier, in index order.
  __shared__ int rank[kMaxK * kMaxK];
  if (t < children) {
    int r = 0;
    for (int u = 0; u < children; ++u) {
      r += (score[u] > score[t] || (score[u] == score[t] && u < t)) ? 1 : 0;
    }
    rank[t] = r;
  }
  __syncthreads();
  if (t >= children || rank[t] >= k) return;
  int slot_index = 0;
  for (int u = 0; u < t; ++u) slot_index += rank[u] < k ? 1 : 0;
  if (slot_index >= k) return;  // cannot happen with a strict order; never write past the frontier
  const int64_t mask = p.depth == 0 ? 0
                                    : static_cast<int64_t>(static_cast<uint64_t>(old_mask[j]) |
                                                           (1ull << ((p.depth - 1) * k + j)));
  const int64_t R = p.requests * k, r = b * k + slot_index;
  const int64_t base = p.base[b];
  p.frontier[r] = static_cast<int32_t>(first + t);
  p.frontier_mask[r] = mask;
  p.rows[kTltDraftRowToken * R + r] = static_cast<int64_t>(tokens[first + t]);
  p.rows[kTltDraftRowPosition * R + r] = base + static_cast<int64_t>(p.depth) * k + slot_index;
  p.rows[kTltDraftRowSlot * R + r] = p.slot[b];
  p.rows[kTltDraftRowRotary * R + r] = base + p.depth;  // base - 1 + (depth + 1)
  p.rows[kTltDraftRowTreeBase * R + r] = base;
  p.rows[kTltDraftRowTreeMask * R + r] = mask;
  p.gather[r] = src_row;
}

}  // namespace

extern "C" {

cudaError_t TltDraftTopK(const float* logits, int64_t rows, int64_t vocab, int k, float* values,
                         int64_t* ids, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (k < 1 || k > kMaxK || vocab < k || rows > INT_MAX) return cudaErrorInvalidValue;
  DraftTopKKernel<<<static_cast<unsigned>(rows), kTopKThreads, 0, stream>>>(logits, vocab, k,
                                                                            values, ids);
  return cudaGetLastError();
}

cudaError_t TltDraftExpand(const TltDraftExpandParams* params, cudaStream_t stream) {
  const TltDraftExpandParams& p = *params;
  if (p.requests == 0) return cudaSuccess;
  if (p.k < 1 || p.k > kMaxK || p.depth < 0 || p.requests > INT_MAX ||
      p.capacity < 1 + p.k + static_cast<int64_t>(p.depth) * p.k * p.k ||
      (p.depth > 0 && (p.depth - 1) * p.k + p.k > 64)) {
    return cudaErrorInvalidValue;
  }
  DraftExpandKernel<<<static_cast<unsigned>(p.requests), 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // extern "C"
