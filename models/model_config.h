// ModelConfig: the shape of a decoder-only Llama/Qwen2 transformer, read from and written to a
// Hugging Face `config.json`.
//
// Llama and Qwen2 are one architecture with different flags: Qwen2 always has a bias on the
// q/k/v projections (`attention_bias` is implied), Llama has one only when `attention_bias` is
// true. Everything else (GQA ratio, tied embeddings, rope theta, head_dim) comes from the keys.
// Parsing fails with a Status that names the missing or bad key and the file; unknown
// model types and rope scaling schemes other than the default are refused, not ignored.
//
// A plain value type: copyable, no synchronization, no LibTorch dependency.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace tlt::models {

struct ModelConfig {
  std::string model_type = "llama";  // "llama" or "qwen2"
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads when the key is absent
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t vocab_size = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;          // bias on q/k/v projections (always true for qwen2)
  bool o_proj_bias = false;             // bias on o_proj: llama's attention_bias; never for qwen2
  std::string torch_dtype = "float32";  // "float32", "bfloat16" or "float16"
  std::vector<int64_t> bos_token_ids;   // may be empty
  std::vector<int64_t> eos_token_ids;   // may be empty; HF allows an int or a list

  // Checks the invariants (positive sizes, heads divisible by kv heads, ...).
  Status Validate() const;
  // Bytes of one key plus one value vector per layer, per token, for `dtype_bytes`-sized elements.
  int64_t KvBytesPerToken(int64_t dtype_bytes) const {
    return 2 * num_hidden_layers * num_key_value_heads * head_dim * dtype_bytes;
  }
};

// Parses the text of a config.json; `source` names it in error messages.
Result<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& source);
// Reads and parses `path` (a config.json file).
Result<ModelConfig> ReadModelConfig(const std::string& path);
// Serializes in HF layout (architectures, model_type and the keys above).
std::string ModelConfigToJson(const ModelConfig& config);
// Writes ModelConfigToJson(config) to `path`.
Status WriteModelConfig(const ModelConfig& config, const std::string& path);

}  // namespace tlt::models
