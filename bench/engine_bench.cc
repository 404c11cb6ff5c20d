// Decode throughput of the models/ engine on a Qwen2-architecture model of about 0.5B
// parameters (Qwen2.5-0.5B's shapes, random weights), bfloat16, greedy, at several batch
// sizes. Writes the weights as a Hugging Face checkpoint first so that
// bench/hf_generate_bench.py runs transformers on exactly the same model.
//
//   engine_bench --out DIR [--batch-sizes 1,8,32,128] [--new-tokens 128] [--device cuda]
//                [--fused 1] [--graphs 1] [--gemv 1] [--tc-gemm 0]
// --fused 0 measures the eager decode (Transformer::Forward each step), --graphs 0 the fused
// kernels without CUDA graphs, --gemv 0 the fused path with cuBLAS GEMMs also for batches of
// <= 4 rows (EngineOptions::small_batch_gemv), --tc-gemm 1 the tensor-core GEMMs of
// gpu/skinny_gemm.h for batches of 5-64 rows (EngineOptions::tensor_core_gemm). Prints one JSON object:
// engine_tokens_per_s_bs{N}, engine_seconds_bs{N}, decode_ms_per_step_bs{N} (wall time of one
// decode step, prefill split off), weights_bytes, config, whether the fused path ran.
#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/engine.h"
#include "models/transformer.h"

namespace m = tlt::models;

int main(int argc, char** argv) {
  std::string out = "/tmp/qwen2-0.5b-random", device_name = "cuda", sizes = "1,8,32,128";
  int64_t new_tokens = 128, prompt_tokens = 32;
  bool fused = true, graphs = true, gemv = true, tc_gemm = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--out") out = v;
    else if (k == "--device") device_name = v;
    else if (k == "--batch-sizes") sizes = v;
    else if (k == "--new-tokens") new_tokens = std::stoll(v);
    else if (k == "--fused") fused = v != "0";
    else if (k == "--graphs") graphs = v != "0";
    else if (k == "--gemv") gemv = v != "0";
    else if (k == "--tc-gemm") tc_gemm = v != "0";
    else { std::cerr << "unknown flag " << k << "\n"; return 2; }
  }
  torch::Device device(device_name);
  m::ModelConfig c;
  c.model_type = "qwen2";
  c.hidden_size = 896;
  c.intermediate_size = 4864;
  c.num_hidden_layers = 24;
  c.num_attention_heads = 14;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 151936;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1000000.0;
  c.max_position_embeddings = 32768;
  c.tie_word_embeddings = true;
  c.attention_bias = true;
  c.torch_dtype = "bfloat16";
  torch::manual_seed(0);
  m::Transformer model(c);
  model->to(torch::kBFloat16);
  auto st = m::SaveTransformer(model, out);
  if (!st.ok()) { std::cerr << st.ToString() << "\n"; return 1; }
  int64_t weight_bytes = 0;
  for (const auto& p : model->parameters()) weight_bytes += p.numel() * p.element_size();

  nlohmann::json result = {{"model", "qwen2 0.5B shapes, random weights"},
                           {"weights_bytes", weight_bytes},
                           {"kv_bytes_per_token", c.KvBytesPerToken(2)},
                           {"prompt_tokens", prompt_tokens},
                           {"new_tokens", new_tokens},
                           {"device", device.str()}};
  std::stringstream ss(sizes);
  std::string part;
  while (std::getline(ss, part, ',')) {
    const int64_t bs = std::stoll(part);
    m::EngineOptions options;
    options.device = device;
    options.dtype = torch::kBFloat16;
    options.max_batch_size = bs;
    options.max_sequence_length = prompt_tokens + new_tokens + 8;
    options.fused_decode = fused;
    options.cuda_graphs = graphs;
    options.small_batch_gemv = gemv;
    options.tensor_core_gemm = tc_gemm;
    options.time_decode_steps = true;
    auto engine = m::Engine::Create(model, options);
    if (!engine.ok()) { std::cerr << engine.status().ToString() << "\n"; return 1; }
    std::vector<m::Request> requests;
    for (int64_t i = 0; i < bs; ++i) {
      m::Request r;
      for (int64_t t = 0; t < prompt_tokens; ++t) r.prompt.push_back((i * 131 + t * 7) % 1000 + 10);
      r.max_new_tokens = new_tokens;
      r.temperature = 0;
      requests.push_back(r);
    }
    auto warm = requests;
    for (auto& r : warm) r.max_new_tokens = 8;
    (void)(*engine)->Generate(warm);
    if (device.is_cuda()) torch::cuda::synchronize();
    // Prefill alone (one new token each), to split the time into prefill and decode steps.
    for (auto& r : warm) r.max_new_tokens = 1;
    auto prefill_start = std::chrono::steady_clock::now();
    (void)(*engine)->Generate(warm);
    if (device.is_cuda()) torch::cuda::synchronize();
    const double prefill_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - prefill_start).count();
    const double device_before = (*engine)->decode_device_seconds();
    const int64_t steps_before = (*engine)->timed_decode_steps();
    auto start = std::chrono::steady_clock::now();
    auto results = (*engine)->Generate(requests);
    if (device.is_cuda()) torch::cuda::synchronize();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!results.ok()) { std::cerr << results.status().ToString() << "\n"; return 1; }
    int64_t generated = 0;
    for (const auto& r : *results) generated += int64_t(r.tokens.size());
    result["engine_tokens_per_s_bs" + part] = generated / seconds;
    result["engine_seconds_bs" + part] = seconds;
    result["prefill_seconds_bs" + part] = prefill_seconds;
    result["decode_ms_per_step_bs" + part] = 1e3 * (seconds - prefill_seconds) / (new_tokens - 1);
    const int64_t timed = (*engine)->timed_decode_steps() - steps_before;
    if (timed > 0) {  // device time of a graph-replayed step: the rest of the wall time is host
      result["decode_device_ms_per_step_bs" + part] =
          1e3 * ((*engine)->decode_device_seconds() - device_before) / timed;
    }
    result["fused_decode"] = (*engine)->fused_decode_active();
    result["small_batch_gemv"] = gemv;
    result["tensor_core_gemm"] = tc_gemm;
    result["cuda_graphs_bs" + part] = (*engine)->num_cuda_graphs();
    std::cerr << "batch " << bs << ": " << generated / seconds << " tokens/s, prefill "
              << prefill_seconds * 1e3 << " ms, decode step "
              << 1e3 * (seconds - prefill_seconds) / (new_tokens - 1) << " ms\n";
  }
  std::cout << result.dump() << std::endl;
  return 0;
}
