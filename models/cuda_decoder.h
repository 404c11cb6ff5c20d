// CudaDecoder: the fast decode step of the Engine on CUDA (one new token per running request),
// also used for tree verification, short prefills and the EAGLE drafter (see DecodeRow).
//
// Batches of <= 4 rows (CudaDecoderOptions::small_batch_gemv, on by default) run four GEMV
// kernels a layer from gpu/gemv_kernels.h (q/k/v with the input RMSNorm and bias fused, o_proj +
// residual, gate/up with the RMSNorm and SiLU*mul fused, down + residual) around the attention
// kernel, and one LM-head GEMV that applies the final norm, writes float32 logits and the greedy
// argmax. Larger batches use cuBLAS: RMSNorm, one q/k/v GEMM (weights concatenated at creation,
// bias fused), attention, o_proj addmm + residual, RMSNorm, one gate/up GEMM, SiLU*mul, down
// addmm + residual. Attention (gpu/decode_kernels.h) is flash-decoding with rotary and the KV
// write fused in, reading each row's length from device memory; tree rows write all keys first
// (a rotary kernel) and attend with ancestor masks. The GEMV and attention kernels use
// programmatic dependent launch on compute capability >= 9 (gpu/dependent_launch.cuh).
// Greedy rows are sampled on the device inside the step; other rows by SampleOnDevice() right
// after it. One device-to-host copy brings back tokens and log-probs.
//
// With CUDA graphs on, the step for B rows is captured once per row-count bucket (1, 2, 4, ...
// up to max_rows; B is padded to its bucket with rows the kernels skip; tree steps have their
// own graphs) and replayed with the step's inputs copied into the graph's static input buffer.
// Graphs are captured lazily (after one eager warm-up) on a side stream, and dropped by
// Invalidate() or when the cache storage moves (KvCache::Release/Recreate). Weight reloads copy
// in place: the concatenated q/k/v and gate/up copies are refreshed when a source parameter's
// version counter changes, so graphs stay valid; a parameter that moved (new storage) rebuilds
// everything.
//
// Create() returns null when the build has no CUDA LibTorch or the model/cache is not
// supported (then the Engine uses Transformer::Forward). Not thread-safe (the Engine's thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/kv_cache.h"
#include "models/sampling.h"
#include "models/transformer.h"
#include "runtime/status.h"

namespace tlt::models {

struct CudaDecoderOptions {
  bool use_graphs = true;  // false: run the fused kernels eagerly every step
  // Batch buckets of <= 8 rows: every projection and the LM head run as small-batch GEMVs
  // (gpu/gemv_kernels.h: persistent grid, x staged and RMSNorm'ed once per block) with the
  // RMSNorm fused in front and the bias/residual add, SiLU*mul or float32 logits + greedy
  // argmax behind: 4 GEMVs + attention per layer, 2 kernels for the head. false: cuBLAS GEMMs
  // (the comparison column of bench/engine_bench --gemv 0).
  bool small_batch_gemv = true;
  // The largest bucket that takes the GEMV path (1..8). At 8 rows the GEMVs measured slower than
  // cuBLAS for Qwen2-0.5B's decode (3787 vs 4516 tokens/s, H200, 2026-11-28), and so was
  // verifying 7 draft-tree rows (6_1_6 at batch 1: 1.28x vs 1.36x over plain with cuBLAS,
  // speculative_bench, H200, 2026-11-29).
  int64_t gemv_max_rows = 4;
  // Rotary + KV-cache write inside the attention kernel (false: a kernel of its own).
  bool fuse_rotary = true;
  // Buckets of 5-64 rows (bfloat16/float16): the q/k/v, o, gate/up and down projections as
  // tensor-core GEMMs (gpu/skinny_gemm.h) instead of cuBLAS. Off until measured on a GPU
  // (written 2026-11-28 after the last GPU run of that session).
  bool tensor_core_gemm = false;
  // Tree steps (verification, drafter catch-up and drafting): attention by tiles of rows that
  // share each key tile they load (gpu/tree_attention.h) instead of a block per row
  // (TltDecodeAttention). Off until measured on a GPU (written 2026-11-29).
  bool tree_attention_shared_keys = false;
  // The most rows one step takes (0: the cache's slots). Tree verification puts every node of
  // every request's draft tree in one step, so it needs up to slots x nodes per tree.
  int64_t max_rows = 0;
  // Time each Decode() on the device with CUDA events (input copy to the last kernel, sampling
  // excluded): device_seconds() / timed_steps(). For benchmarks: how much of a step is host work.
  bool time_steps = false;
};

// One running request in a decode step.
struct DecodeRow {
  int64_t token = 0;     // the last token (input of this step)
  int64_t position = 0;  // cached length = position of `token`
  int64_t slot = 0;      // KV-cache slot
  SamplingParams params;
  double uniform = 0;  // CounterUniform(seed, tokens drawn so far)
  // Draft-tree rows (speculative verification): the nodes of one tree are rows of one slot in
  // one step, node i at position tree_base + i. rotary_position (-1: position) is the node's
  // position in its sequence (tree_base + depth). With tree_base >= 0 the row sees keys before
  // tree_base, itself, and the keys tree_base + j whose bit j is set in tree_mask (its
  // ancestors); position - tree_base <= 63. Every row's key/value is written before any row
  // attends, so a node sees its ancestors' new keys.
  int64_t rotary_position = -1;
  int64_t tree_base = -1;
  uint64_t tree_mask = 0;
};

// The raw result of a step: views into the decoder's buffers, valid until its next call.
struct StepTensors {
  torch::Tensor logits;  // float32 [rows, V] on the device
  torch::Tensor hidden;  // [rows, hidden] (model dtype) on the device: the final-normed state
};

struct DecodeOutput {
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;
  // [rows, hidden] (model dtype) when asked, else undefined: on the CPU, or a copy on the
  // device with hidden_on_device.
  torch::Tensor hidden;
};

// The parameters a step reads. From a Transformer: its embedding, layers, final norm and LM head.
// An EAGLE drafter (speculative/drafter.h) adds an input projection, x = input_fc(cat(embed(token),
// hidden_in)) with hidden_in given per row, and has no final norm (the hidden state a step returns
// is then the last layer's output). Tensors are the modules' own parameters (not copies).
struct DecoderWeights {
  ModelConfig config;  // shapes; num_hidden_layers is layers.size()
  torch::Tensor embed;                                   // [V, H]
  torch::Tensor input_fc_weight, input_fc_bias;          // [H, 2H], [H]; undefined: none
  std::vector<std::shared_ptr<DecoderLayerImpl>> layers;
  torch::Tensor final_norm;  // [H]; undefined: none
  torch::Tensor head;        // [V, H] (the embedding when tied)
};

class CudaDecoder {
 public:
  // Null (and the reason in *why, if given) when unsupported; see the file comment.
  static std::unique_ptr<CudaDecoder> Create(Transformer model, KvCache* cache,
                                             const CudaDecoderOptions& options,
                                             std::string* why = nullptr);
  // `weights` is called at creation and again whenever a parameter has moved to new storage
  // (an in-place load keeps the captured graphs; see the file comment).
  static std::unique_ptr<CudaDecoder> CreateFromWeights(std::function<DecoderWeights()> weights,
                                                        KvCache* cache,
                                                        const CudaDecoderOptions& options,
                                                        std::string* why = nullptr);
  virtual ~CudaDecoder() = default;

  // Runs the step: writes each row's key/value at `position` (the caller commits the length),
  // samples the next token. rows.size() <= max_rows (default: the cache slots).
  virtual Result<DecodeOutput> Decode(const std::vector<DecodeRow>& rows, bool want_hidden,
                                      bool hidden_on_device = false) = 0;
  // Float32 logits [rows, V] of the step (a copy, on the device), without sampling (tests).
  virtual Result<torch::Tensor> DecodeLogits(const std::vector<DecodeRow>& rows) = 0;
  // Runs the step without sampling (tree verification): writes every row's key/value, returns
  // logits and hidden states of all rows (views; see StepTensors). rows.size() <= max_rows.
  virtual Result<StepTensors> Forward(const std::vector<DecodeRow>& rows) = 0;
  // The same with an input projection (DecoderWeights::input_fc_weight): hidden_in [rows, H] on
  // the device, in the model dtype.
  virtual Result<StepTensors> Forward(const std::vector<DecodeRow>& rows,
                                      const torch::Tensor& hidden_in) = 0;
  // The same with the rows already on the device, computed there by an earlier kernel (the
  // drafting loop of speculative/device_draft.h), so no host round trip sits between steps:
  // `rows` int64 [kDeviceRowFields, n] on the device, field f of row i at [f, i], the fields
  // being DecodeRow's token, position, slot, rotary_position (explicit, not -1), tree_base,
  // tree_mask. They run as tree rows. Their values are not checked on the host (they never
  // come there): the producer must keep them in range as Forward() requires.
  static constexpr int64_t kDeviceRowFields = 6;
  // While the current stream is capturing a caller's CUDA graph (the drafting loop of
  // speculative/device_draft.h captures all its depths as one graph), the step's kernels are
  // recorded into that capture, with buffers of their own that belong to it, instead of
  // replaying this decoder's graph.
  // gather (int64 [n] on the device, optional): row i's hidden input is hidden_in[gather[i]]
  // (any number of rows in hidden_in), read by the step's input kernel without a staging copy.
  virtual Result<StepTensors> ForwardDeviceRows(const torch::Tensor& rows,
                                                const torch::Tensor& hidden_in,
                                                const torch::Tensor& gather = {}) = 0;
  // For callers replaying a graph that recorded this decoder's steps: applies in-place weight
  // loads to the concatenated copies and notices a moved cache (call before each replay). The
  // recorded steps stay valid while epoch() is unchanged; Invalidate(), a moved cache or moved
  // parameters change it (then recapture).
  virtual Status Refresh() = 0;
  virtual int64_t epoch() const = 0;
  // Drops the captured graphs and their memory (before the cache is released).
  virtual void Invalidate() = 0;
  virtual int64_t num_graphs() const = 0;
  virtual int64_t max_rows() const = 0;
  virtual double device_seconds() const = 0;
  virtual int64_t timed_steps() const = 0;
};

// Prefill through a decoder's fused kernels (models/fused_prefill.cc): prompt b's tokens are
// written at starts[b], starts[b] + 1, ... of slots[b], as chains of <= 64 rows (a chain is tree
// rows whose masks show every earlier row of the chunk; earlier chunks lie before its base),
// with several prompts' chunks in one step up to the decoder's max_rows. For short prompts this
// replaces dozens of eager launches per layer by a few graph replays.
struct PrefillOutput {
  torch::Tensor last_logits;  // float32 [B, V] on the device: each prompt's last token
  torch::Tensor last_hidden;  // [B, H] on the device
  std::vector<torch::Tensor> all_hidden;  // per prompt [n_b, H] when asked, else empty
};
// The number of decoder steps FusedPrefill would take (callers use the eager forward for long
// prompts, where large GEMMs win).
int64_t FusedPrefillSteps(const CudaDecoder& decoder, const std::vector<int64_t>& lengths);
Result<PrefillOutput> FusedPrefill(CudaDecoder& decoder,
                                   const std::vector<std::vector<int64_t>>& prompts,
                                   const std::vector<int64_t>& starts,
                                   const std::vector<int64_t>& slots, bool all_hidden);

}  // namespace tlt::models
