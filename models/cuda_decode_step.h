// DecodeStep: the kernel sequence of one models::CudaDecoder step. Internal to models/ (the
// decoder's .cc files); compiled only with a CUDA LibTorch and the gpu/ kernels.
//
// Compute() launches, on the current stream, the kernels of one step for buffers.size rows
// from the staged inputs (StepBuffers::input, and hidden_in or a gathered hidden_source for a
// model with an input projection, whose embedding/hidden concatenation is one kernel and whose
// projection is a GEMV in small buckets): buckets of <= options.gemv_max_rows rows run the small-batch GEMVs with the
// RMSNorms, bias/residual adds and SiLU*mul fused (ForwardSmall), larger ones cuBLAS (or the
// tensor-core GEMMs) around the same attention kernels; then the LM head writes float32 logits,
// the hidden states and the greedy pack into the buffers (models/cuda_decoder.h describes the
// numerics). The decoder runs it eagerly, captures it into its graphs, or records it into a
// caller's capture; everything it allocates comes from the current allocator pool.
#pragma once

#include <cuda_runtime_api.h>
#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "models/cuda_decoder.h"
#include "models/cuda_decoder_weights.h"
#include "models/kv_cache.h"

// Checks a CUDA call; throws c10::Error naming the file and line (caught in Decode).
#define TLT_CUDA_CHECK(expr)                                                        \
  do {                                                                              \
    const cudaError_t tlt_err = (expr);                                             \
    TORCH_CHECK(tlt_err == cudaSuccess, __FILE__, ":", __LINE__, ": ", #expr, ": ", \
                cudaGetErrorString(tlt_err));                                       \
  } while (0)

namespace tlt::models {

// Input rows of a bucket's static buffer (int64 [kInputRows, size]; float rows hold doubles).
// The first kDeviceRowFields rows are ForwardDeviceRows()'s layout (cuda_decoder.h).
enum InputRow {
  kToken,
  kPosition,
  kSlot,
  kRotaryPosition,
  kTreeBase,
  kTreeMask,
  kTopK,
  kTemperature,  // kTemperature, kTopP, kUniform: adjacent (Decode() reads them as one view)
  kTopP,
  kUniform,
  kInputRows
};
static_assert(kTreeMask + 1 == CudaDecoder::kDeviceRowFields, "device rows lead the input buffer");

// A step's static buffers: inputs staged by the decoder, outputs written by Compute().
struct StepBuffers {
  int64_t size = 0;
  bool tree = false;        // tree rows: rotary/cache write first, then masked attention
  torch::Tensor input;      // int64 [kInputRows, size] on the device
  torch::Tensor logits;     // float32 [size, V]
  torch::Tensor hidden;     // [size, hidden]
  torch::Tensor packed;     // float64 [2, size]: greedy tokens, zero log-probs (plain steps)
  torch::Tensor hidden_in;  // [size, hidden]: the input projection's per-row input (drafters)
  // Set only while a step is recorded into a caller's capture (ForwardDeviceRows with a
  // gather): row b's input is hidden_source[hidden_gather[b]] for b < hidden_rows (zeros
  // after), read in place instead of staged in hidden_in.
  torch::Tensor hidden_source, hidden_gather;
  int64_t hidden_rows = 0;
};

class DecodeStep {
 public:
  // References are kept: `weights`, `config`, `cache` and `options` outlive this object (the
  // decoder's members). attention_counters: int32 zeros the attention kernel's tickets use.
  DecodeStep(const DecoderWeightSet& weights, const ModelConfig& config, KvCache* cache,
             const CudaDecoderOptions& options, torch::Dtype dtype, torch::Device device,
             torch::Tensor attention_counters);
  ~DecodeStep();
  // The step for buffers.size rows; outputs into buffers.logits/hidden/packed.
  void Compute(StepBuffers& buffers);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tlt::models
