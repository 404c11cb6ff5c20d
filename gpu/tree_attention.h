// Tree attention with shared key tiles (speculative verification and drafter catch-up).
//
// TltDecodeAttention gives every (row, kv head) a block of its own, so the ~50 rows of one
// request's draft tree each stream the same cached keys through shared memory, one after the
// other. TltTreeAttention gives a block a tile of consecutive rows instead: up to 64 query
// vectors (rows x the H / KV query heads of one kv head) scored against each key tile it loads
// once, and splits the keys over blocks (flash-decoding) so that short trees still fill the
// device. Rows of a tile that belong to different slots (another request's tree) are taken one
// run of equal slots after the other.
//
// Contract (the same inputs and output as TltDecodeAttention's tree form, gpu/decode_kernels.h):
//   q [B, H, D], rotated (not yet scaled by 1 / sqrt(D)); the caches [slots, max_length, KV, D]
//   already hold every row's new key and value. Row b attends to the keys 0 .. positions[b] of
//   slot slots[b]; with tree_base[b] >= 0, keys tree_base[b] + j below positions[b] are visible
//   only where bit j of tree_mask[b] is set (positions[b] - tree_base[b] <= 63). Padding rows
//   (slot < 0 or position < 0) get zeros. out [B, H, D].
//   workspace: TltTreeAttentionWorkspaceBytes of float32 scratch; counters: at least
//   TltDecodeAttentionCounterCount(batch, num_heads) int32, zero before the call and left zero.
//   Calls sharing workspace or counters must not run concurrently.
// Supported (TltTreeAttentionSupported): float32, bfloat16, float16; head_dim a multiple of 4
// up to 128; H / KV <= 64; the shared memory the block needs within the device's opt-in limit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

extern "C" {

int TltTreeAttentionSupported(int dtype, int64_t num_heads, int64_t num_kv_heads,
                              int64_t head_dim);

int64_t TltTreeAttentionWorkspaceBytes(int64_t batch, int64_t num_heads, int64_t num_kv_heads,
                                       int64_t head_dim, int64_t max_length);

cudaError_t TltTreeAttention(int dtype, const void* q, const void* k_cache, const void* v_cache,
                             const int64_t* positions, const int64_t* tree_base,
                             const int64_t* tree_mask, const int64_t* slots, void* out,
                             float* workspace, int* counters, int64_t batch, int64_t num_heads,
                             int64_t num_kv_heads, int64_t head_dim, int64_t max_length,
                             cudaStream_t stream);

}  // extern "C"
