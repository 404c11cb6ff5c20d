// CudaDecoder: the fast decode step of the Engine on CUDA (one new token per running request).
//
// Per layer the step runs eight kernels (nine for caches longer than one attention chunk):
// RMSNorm, one q/k/v GEMM (weights concatenated at creation, bias fused), flash-decoding
// attention with rotary and the KV-cache write fused in (a partial and, for long caches, a
// combine kernel, reading each row's length from device memory), o_proj GEMM with the residual
// add fused (addmm), RMSNorm, one gate/up GEMM, SiLU*mul, down_proj GEMM + residual (addmm);
// the kernels live in gpu/decode_kernels.cu. Optionally, batches of <= 8 rows replace each
// RMSNorm + GEMM pair by one GEMV kernel (CudaDecoderOptions::small_batch_gemv, off by default).
// Greedy rows are sampled on the device inside the step;
// other rows by SampleOnDevice() right after it. One device-to-host copy brings back tokens and
// log-probs.
//
// With CUDA graphs on, the step for a batch of B rows is captured once per batch-size bucket
// (1, 2, 4, ... up to the cache's slots; B is padded to its bucket with rows the kernels skip)
// and replayed with the step's inputs copied into the graph's static input buffer. Graphs are
// captured lazily (after one eager warm-up) on a side stream, and dropped by Invalidate() or
// when the cache storage moves (KvCache::Release/Recreate). Weight reloads copy in place: the
// concatenated q/k/v and gate/up copies are refreshed when a source parameter's version counter
// changes, so graphs stay valid; a parameter that moved (new storage) rebuilds everything.
//
// Create() returns null when the build has no CUDA LibTorch or the model/cache is not
// supported (then the Engine uses Transformer::Forward). Not thread-safe (the Engine's thread).
#pragma once

#include <cstdint>
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
  // Rotary + KV-cache write inside the attention kernel (false: a kernel of its own).
  bool fuse_rotary = true;
};

// One running request in a decode step.
struct DecodeRow {
  int64_t token = 0;     // the last token (input of this step)
  int64_t position = 0;  // cached length = position of `token`
  int64_t slot = 0;      // KV-cache slot
  SamplingParams params;
  double uniform = 0;  // CounterUniform(seed, tokens drawn so far)
};

struct DecodeOutput {
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;
  torch::Tensor hidden;  // [rows, hidden] on CPU (model dtype) when asked, else undefined
};

class CudaDecoder {
 public:
  // Null (and the reason in *why, if given) when unsupported; see the file comment.
  static std::unique_ptr<CudaDecoder> Create(Transformer model, KvCache* cache,
                                             const CudaDecoderOptions& options,
                                             std::string* why = nullptr);
  virtual ~CudaDecoder() = default;

  // Runs the step: writes each row's key/value at `position` (the caller commits the length),
  // samples the next token. rows.size() <= cache slots.
  virtual Result<DecodeOutput> Decode(const std::vector<DecodeRow>& rows, bool want_hidden) = 0;
  // Float32 logits [rows, V] of the step (a copy, on the device), without sampling (tests).
  virtual Result<torch::Tensor> DecodeLogits(const std::vector<DecodeRow>& rows) = 0;
  // Drops the captured graphs and their memory (before the cache is released).
  virtual void Invalidate() = 0;
  virtual int64_t num_graphs() const = 0;
};

}  // namespace tlt::models
