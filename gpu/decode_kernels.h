// Fused CUDA kernels for one decode step of a Llama/Qwen2 decoder (one token per row).
//
// A C interface on raw device pointers and a cudaStream_t, without torch headers, so the .cu
// file compiles with nvcc alone. Element type `dtype`: 0 float32, 1 bfloat16, 2 float16; every
// activation, weight and cache pointer of one call has that type. Row b's cache slot is
// slots[b] (negative: a padding row, which the kernels skip) and its position positions[b]
// (the number of keys already cached); both are read from device memory, so one captured CUDA
// graph serves every context length. Launch errors come back as cudaError_t.
//
// Numerics follow the eager LibTorch path (models/transformer.cc): RMSNorm and SiLU*mul round
// to the element type where it rounds; rotary reads a precomputed cos/sin table and rounds
// each product; attention keeps scores, softmax and the weighted sum in float32.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

extern "C" {

enum TltDtype { kTltFloat32 = 0, kTltBFloat16 = 1, kTltFloat16 = 2 };

// y[r] = weight * round(x[r] / sqrt(mean(x[r]^2) + eps)) for `rows` rows of `dim`.
cudaError_t TltRmsNorm(int dtype, const void* x, const void* weight, void* y, int64_t rows,
                       int64_t dim, float eps, cudaStream_t stream);

// qkv [B, (H + 2 KV) D] (q heads, then k heads, then v heads). Rotates q and k by the cos/sin
// table rows rotary_positions[b] ([max_positions, D], element type; rotary_positions null:
// positions[b]), writes rotated q to q_out [B, H, D], and rotated k and v into the layer's cache
// at [slots[b], positions[b]] (cache [num_slots, max_length, KV, D]).
cudaError_t TltRotaryCacheWrite(int dtype, const void* qkv, const void* cos, const void* sin,
                                const int64_t* positions, const int64_t* rotary_positions,
                                const int64_t* slots, void* q_out,
                                void* k_cache, void* v_cache, int64_t batch, int64_t num_heads,
                                int64_t num_kv_heads, int64_t head_dim, int64_t max_length,
                                cudaStream_t stream);

// Bytes of float32 workspace TltDecodeAttention needs (scratch: no initial contents).
int64_t TltDecodeAttentionWorkspaceBytes(int64_t batch, int64_t num_heads, int64_t num_kv_heads,
                                         int64_t head_dim, int64_t max_length);

// Number of int32 counters TltDecodeAttention needs. They must be zero before the first call;
// every call leaves them zero. Calls that share counters must not run concurrently.
int64_t TltDecodeAttentionCounterCount(int64_t batch, int64_t num_heads);

// out [B, H * D] = softmax(q k^T / sqrt(D)) v over keys 0 .. positions[b] of slot slots[b]
// (GQA: query head h reads kv head h / (H / KV)). Flash-decoding (gpu/decode_attention.cu):
// one block per (row, kv head or, below 64 (row, kv head) pairs, query head, chunk of keys).
// The grid has enough chunks for max_length; each row uses as many as its own length needs
// (chunks of >= 128 keys below 16 kv rows, >= 256 below 264, >= 512 above; at most about two
// blocks per SM in all), and with several chunks the last one to finish combines them, so a
// short row costs one kernel without a combine pass. Keys and values go through shared memory
// with asynchronous copies. head_dim <= 256, even; H / KV <= 16. Padding rows get zeros.
// cos/sin null: q is [B, H, D], rotated, and the cache already holds the new key/value.
// Otherwise q is the q/k/v projection [B, (H + 2 KV) D] and the kernel does what
// TltRotaryCacheWrite does first (one kernel fewer per layer). In that case (launched with
// dependent launch) the kernel reads the cached keys of earlier positions before the previous
// kernel has finished: nothing inside a decode step may write them.
// Tree attention (speculative verification; tree_base/tree_mask not null, cos/sin null since
// several rows of one slot read each other's new keys): when tree_base[b] >= 0, keys
// tree_base[b] + j for 0 <= j < positions[b] - tree_base[b] are visible to row b only where bit j
// of tree_mask[b] is set (its ancestors in the draft tree); keys before tree_base[b] and the
// row's own key positions[b] are always visible. positions[b] - tree_base[b] <= 63.
cudaError_t TltDecodeAttention(int dtype, const void* q, const void* cos, const void* sin,
                               void* k_cache, void* v_cache, const int64_t* positions,
                               const int64_t* tree_base, const int64_t* tree_mask,
                               const int64_t* slots, void* out, float* workspace, int* counters,
                               int64_t batch, int64_t num_heads, int64_t num_kv_heads,
                               int64_t head_dim, int64_t max_length, cudaStream_t stream);

// gate_up [rows, 2 I] (gate, then up) -> out [rows, I] = round(silu(gate)) * up.
cudaError_t TltSiluMul(int dtype, const void* gate_up, void* out, int64_t rows,
                       int64_t intermediate, cudaStream_t stream);

// A drafter's input rows: out [rows, 2 H] = (embed[tokens[b]], hidden[g]) with g = gather[b]
// (gather null: g = b) for b < hidden_rows, and (embed[tokens[b]], 0) for the rows after
// (padding). Copies only (no rounding); tokens int64 [rows], embed [vocab, H] and hidden
// [source_rows, H] row-major. A token outside [0, vocab) or a g outside [0, source_rows) traps
// (the device reports an error on the next synchronization, as LibTorch's index checks do).
cudaError_t TltEmbedConcat(int dtype, const int64_t* tokens, const void* embed, int64_t vocab,
                           const void* hidden, int64_t source_rows, const int64_t* gather,
                           void* out, int64_t rows, int64_t hidden_rows, int64_t hidden_size,
                           cudaStream_t stream);

}  // extern "C"
