// Speculative decoding benchmark on a target that has learned something.
//
// 1. Trains a Qwen2-architecture target (random init, float32) on the bundled synthetic task
//    (rl/synthetic_task.h: chain sums with worked solutions) by supervised fine-tuning, and
//    reports its loss and token accuracy on held-out examples.
// 2. Records the target's greedy outputs on training prompts and trains a drafter on them
//    (DrafterTrainer), reporting its loss and top-1 agreement.
// 3. Measures decode throughput (bfloat16 on CUDA, greedy, held-out prompts, up to --new-tokens
//    per request, stopping at <eos>; prompts of 8 to 14 terms; after one warm-up run of the same
//    requests, so CUDA graphs are captured before timing) at each batch size for:
//    models::Engine ("plain"), the SpeculativeEngine with SD never on ("plain_eager": the same
//    eager forwards the SD engine uses), each fixed strategy, and adaptive mode (BEG-MAB, SD on at
//    batch <= 32 after 10 steps); with the mean accepted length, draft and verify seconds.
//
//   speculative_bench [--device cuda] [--hidden 1024 --layers 24 --heads 16 --kv-heads 4
//     --intermediate 2816] [--sft-steps 300 --drafter-steps 800 --drafter-sequences 1024]
//     [--batch-sizes 1,2,4,8,16,32,64] [--strategies 6_1_6,6_4_16] [--new-tokens 96]
//     [--fused-plain-decode 0|1] [--tc-gemm 0|1] [--waves 3] [--min-requests 16] [--deterministic 1]
//     [--adaptive-strategies 8_4_48,...]
// A strategy (and an --adaptive entry, default "adaptive") may carry variants after colons,
// compared side by side in one run: "6_4_16:host" drafts with the host loop instead of on the
// device, "6_1_6:gemv8" verifies through the GEMV kernels up to 8 rows ("adaptive,adaptive:gemv16").
// --tc-gemm 1: SpeculativeEngineOptions::tensor_core_gemm (verification steps of 5-64 rows
// through gpu/skinny_gemm.h). --waves N measures N batches of requests one after another
// (different held-out prompts), so that adaptive mode's bandit, which explores untried arms
// first, is measured over more than one short batch; small batch sizes run more waves, so that
// every batch size measures at least --min-requests requests (accepted lengths vary by prompt).
// Prints one JSON object on stdout; progress on stderr.
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/engine.h"
#include "models/transformer.h"
#include "rl/synthetic_task.h"
#include "speculative/drafter_trainer.h"
#include "speculative/speculative_engine.h"

namespace m = tlt::models;
namespace sp = tlt::speculative;

namespace {

struct Args {
  std::string device = "cuda", sizes = "1,2,4,8,16,32,64", strategies = "6_1_6,6_4_16";
  int64_t hidden = 1024, layers = 24, heads = 16, kv_heads = 4, intermediate = 2816;
  int64_t sft_steps = 300, sft_batch = 64, drafter_steps = 800, new_tokens = 96;
  int64_t drafter_sequences = 1024;  // recorded target outputs the drafter trains on
  int64_t min_requests = 16;         // measured requests per batch size, at least (more waves)
  bool fused_plain_decode = true;   // SD engine's SD-off steps through CudaDecoder
  bool tc_gemm = false;             // SpeculativeEngineOptions::tensor_core_gemm
  bool deterministic = true;        // deterministic algorithms while training (see main)
  int64_t waves = 3;                // measured batches of requests per batch size, at least
  std::string adaptive = "adaptive";  // adaptive configurations (with variants, see below)
  std::string adaptive_strategies;  // adaptive mode's arms (empty: the engine's defaults)
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

std::vector<int64_t> Ints(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) out.push_back(std::stoll(part));
  return out;
}

// Prompt and prompt+solution+<eos> token ids of synthetic example `index` of stream `seed`.
// Benchmark prompts (min_terms 8) have worked solutions of about 70 tokens or more.
std::pair<std::vector<int64_t>, std::vector<int64_t>> Encode(const tlt::rl::CharVocab& vocab,
                                                             uint64_t seed, int64_t index,
                                                             int64_t min_terms = 3) {
  tlt::rl::SyntheticTaskOptions o;
  o.min_terms = min_terms;
  o.max_terms = 14;
  o.modulus = 100;
  tlt::rl::Example e = tlt::rl::SyntheticExample(o, seed, index);
  std::vector<int64_t> prompt = vocab.Encode(e.prompt).value();
  std::vector<int64_t> all = vocab.Encode(e.prompt + e.fields["solution"]).value();
  all.push_back(1);  // <eos>
  return {prompt, all};
}

// Supervised fine-tuning on solutions: returns {loss, token accuracy} of the last batch.
std::pair<double, double> SftStep(m::Transformer& model, torch::optim::Optimizer& opt,
                                  const tlt::rl::CharVocab& vocab, uint64_t seed, int64_t first,
                                  int64_t batch, torch::Device device, bool train) {
  std::vector<std::vector<int64_t>> seqs;
  std::vector<int64_t> prompt_lengths;
  int64_t T = 0;
  for (int64_t i = 0; i < batch; ++i) {
    auto [prompt, all] = Encode(vocab, seed, first + i);
    prompt_lengths.push_back(prompt.size());
    T = std::max<int64_t>(T, all.size());
    seqs.push_back(all);
  }
  torch::Tensor tokens = torch::zeros({batch, T}, torch::kInt64);
  torch::Tensor weight = torch::zeros({batch, T - 1});
  for (int64_t b = 0; b < batch; ++b) {
    std::copy(seqs[b].begin(), seqs[b].end(), tokens.data_ptr<int64_t>() + b * T);
    const int64_t n = seqs[b].size();
    weight[b].narrow(0, prompt_lengths[b] - 1, n - prompt_lengths[b]).fill_(1.0);
  }
  tokens = tokens.to(device);
  weight = weight.to(device);
  torch::AutoGradMode grad(train);
  torch::Tensor logits = model->forward(tokens).narrow(1, 0, T - 1);
  torch::Tensor labels = tokens.narrow(1, 1, T - 1);
  torch::Tensor nll = torch::nn::functional::cross_entropy(
      logits.reshape({-1, logits.size(-1)}), labels.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  torch::Tensor loss = (nll * weight.reshape({-1})).sum() / weight.sum();
  if (train) {
    opt.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt.step();
  }
  torch::Tensor correct = (logits.argmax(-1) == labels).to(torch::kFloat32) * weight;
  return {loss.item<double>(), (correct.sum() / weight.sum()).item<double>()};
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--device")
      a.device = v;
    else if (k == "--batch-sizes")
      a.sizes = v;
    else if (k == "--strategies")
      a.strategies = v;
    else if (k == "--hidden")
      a.hidden = std::stoll(v);
    else if (k == "--layers")
      a.layers = std::stoll(v);
    else if (k == "--heads")
      a.heads = std::stoll(v);
    else if (k == "--kv-heads")
      a.kv_heads = std::stoll(v);
    else if (k == "--intermediate")
      a.intermediate = std::stoll(v);
    else if (k == "--sft-steps")
      a.sft_steps = std::stoll(v);
    else if (k == "--sft-batch")
      a.sft_batch = std::stoll(v);
    else if (k == "--drafter-steps")
      a.drafter_steps = std::stoll(v);
    else if (k == "--new-tokens")
      a.new_tokens = std::stoll(v);
    else if (k == "--fused-plain-decode")
      a.fused_plain_decode = v == "1";
    else if (k == "--tc-gemm")
      a.tc_gemm = v == "1";
    else if (k == "--adaptive")
      a.adaptive = v;
    else if (k == "--adaptive-strategies")
      a.adaptive_strategies = v;
    else if (k == "--waves")
      a.waves = std::max<int64_t>(1, std::stoll(v));
    else if (k == "--deterministic")
      a.deterministic = v == "1";
    else if (k == "--min-requests")
      a.min_requests = std::max<int64_t>(1, std::stoll(v));
    else if (k == "--drafter-sequences")
      a.drafter_sequences = std::max<int64_t>(1, std::stoll(v));
    else {
      std::cerr << "unknown flag " << k << "\n";
      return 2;
    }
  }
  // Training the target and the drafter with deterministic algorithms makes runs of one commit
  // train the same models (GPU training otherwise drifts: held-out loss 0.92 vs 1.03 from the
  // same seeds), so their throughput ratios compare. cuBLAS needs its workspace configured
  // before its first use (":4096:8" is PyTorch's default size on Hopper); ops without a
  // deterministic kernel only warn. Measurement runs with the default algorithms.
  if (a.deterministic) {
    setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
    at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
  }
  const torch::Device device(a.device);
  const torch::Dtype dtype = device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  at::globalContext().setAllowTF32CuBLAS(true);  // SFT in float32 with TF32 matmuls
  tlt::rl::CharVocab vocab = tlt::rl::SyntheticTaskVocab().value();
  m::ModelConfig c;
  c.model_type = "qwen2";
  c.hidden_size = a.hidden;
  c.intermediate_size = a.intermediate;
  c.num_hidden_layers = a.layers;
  c.num_attention_heads = a.heads;
  c.num_key_value_heads = a.kv_heads;
  c.head_dim = a.hidden / a.heads;
  c.vocab_size = vocab.vocab_size();
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = true;
  c.attention_bias = true;
  c.eos_token_ids = {1};
  torch::manual_seed(0);
  m::Transformer target(c);
  target->to(device);
  int64_t params = 0;
  for (const auto& p : target->parameters()) params += p.numel();
  nlohmann::json result = {
      {"device", device.str()},
      {"target_parameters", params},
      {"target", {{"hidden", a.hidden}, {"layers", a.layers}, {"vocab", c.vocab_size}}}};
  // 1. SFT of the target on the synthetic task (training stream 1, held-out stream 2).
  auto start = std::chrono::steady_clock::now();
  torch::optim::AdamW opt(target->parameters(), torch::optim::AdamWOptions(5e-4).weight_decay(0.0));
  for (int64_t step = 0; step < a.sft_steps; ++step) {
    auto [loss, acc] =
        SftStep(target, opt, vocab, 1, step * a.sft_batch, a.sft_batch, device, true);
    if (step % 50 == 0 || step + 1 == a.sft_steps)
      std::cerr << "sft step " << step << ": loss " << loss << ", token accuracy " << acc << "\n";
  }
  target->eval();
  auto [eval_loss, eval_acc] = SftStep(target, opt, vocab, 2, 0, 256, device, false);
  result["sft"] = {{"steps", a.sft_steps},
                   {"batch", a.sft_batch},
                   {"seconds", Seconds(start)},
                   {"heldout_loss", eval_loss},
                   {"heldout_token_accuracy", eval_acc}};
  std::cerr << "target held-out loss " << eval_loss << ", token accuracy " << eval_acc << "\n";

  // 2. Drafter trained on the target's greedy outputs (float32).
  start = std::chrono::steady_clock::now();
  std::vector<m::Request> train_requests;
  for (int64_t i = 0; i < a.drafter_sequences; ++i) {
    m::Request r;
    r.prompt = Encode(vocab, 3, i).first;
    r.max_new_tokens = 200;
    r.temperature = 0;
    r.stop_token_ids = {1};
    train_requests.push_back(r);
  }
  m::EngineOptions record_options;
  record_options.device = device;
  record_options.dtype = torch::kFloat32;
  record_options.max_batch_size = 128;
  record_options.max_sequence_length = 320;
  std::vector<sp::DrafterSample> data;
  {
    auto engine = m::Engine::Create(target, record_options).value();
    auto outputs = engine->Generate(train_requests).value();
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < outputs.size(); ++i) {
      sp::DrafterSample s;
      s.tokens = train_requests[i].prompt;
      s.tokens.insert(s.tokens.end(), outputs[i].tokens.begin(), outputs[i].tokens.end());
      s.prompt_length = train_requests[i].prompt.size();
      const int64_t n = s.tokens.size();
      s.hidden = target
                     ->Forward(torch::tensor(s.tokens).unsqueeze(0).to(device),
                               m::BatchLayout::Dense(1, n, device), nullptr,
                               m::ForwardOptions().return_hidden(true))
                     .hidden[0];
      data.push_back(s);
    }
  }
  sp::Drafter drafter = sp::InitDrafter(target, 0);
  sp::DrafterTrainerOptions topt = sp::DrafterTrainerOptions::OfflineDefaults();
  topt.learning_rate = 1e-3;
  sp::DrafterTrainer trainer(target, drafter, topt);
  sp::DrafterTrainStats last;
  for (int64_t step = 0; step < a.drafter_steps; ++step) {
    std::vector<sp::DrafterSample> batch;
    for (int64_t i = 0; i < 32; ++i) batch.push_back(data[(step * 32 + i) % data.size()]);
    last = trainer.TrainStep(batch).value();
    if (step % 100 == 0 || step + 1 == a.drafter_steps)
      std::cerr << "drafter step " << step << ": loss " << last.loss << ", top-1 "
                << last.top1_accuracy << "\n";
  }
  result["drafter"] = {{"steps", a.drafter_steps},
                       {"sequences", data.size()},
                       {"seconds", Seconds(start)},
                       {"loss", last.loss},
                       {"top1_accuracy", last.top1_accuracy}};

  at::globalContext().setDeterministicAlgorithms(false, false);
  result["deterministic_training"] = a.deterministic;
  // 3. Throughput at each batch size (held-out prompts, stream 4).
  std::vector<std::string> configs = {"plain", "plain_eager"};
  std::stringstream ss(a.strategies);
  for (std::string s; std::getline(ss, s, ',');) configs.push_back(s);
  std::stringstream adaptive_names(a.adaptive);
  for (std::string s; std::getline(adaptive_names, s, ',');) configs.push_back(s);
  result["configs"] = configs;
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t bs : Ints(a.sizes)) {
    std::vector<m::Request> requests;
    for (int64_t i = 0; i < bs; ++i) {
      m::Request r;
      r.prompt = Encode(vocab, 4, i, /*min_terms=*/8).first;
      r.max_new_tokens = a.new_tokens;
      r.temperature = 0;
      r.stop_token_ids = {1};
      requests.push_back(r);
    }
    // Warm-up: the same requests in full, so that every CUDA graph bucket the measured run
    // needs (decode, tree verification, drafter depths, prefill chunks) is captured before it.
    auto warm = requests;
    // Measured: --waves batches of bs requests one after another (wave 0 = the warm-up's
    // requests, later waves other held-out prompts); tokens and seconds summed over them.
    std::vector<std::vector<m::Request>> waves = {requests};
    const int64_t num_waves = std::max(a.waves, (a.min_requests + bs - 1) / bs);
    for (int64_t w = 1; w < num_waves; ++w) {
      std::vector<m::Request> wave = requests;
      for (int64_t i = 0; i < bs; ++i) wave[i].prompt = Encode(vocab, 4, i + w * bs, 8).first;
      waves.push_back(wave);
    }
    // plain_eager (a slow reference) measures the first wave only.
    auto measure = [&](auto& engine, double* seconds, int64_t* tokens, size_t max_waves = 0) {
      sync();
      const auto begin = std::chrono::steady_clock::now();
      for (size_t w = 0; w < waves.size() && (max_waves == 0 || w < max_waves); ++w) {
        auto out = engine->Generate(waves[w]).value();
        for (const auto& r : out) *tokens += r.tokens.size();
      }
      sync();
      *seconds = Seconds(begin);
    };
    nlohmann::json row = {{"batch", bs}};
    for (const std::string& name : configs) {
      double seconds = 0;
      int64_t tokens = 0;
      nlohmann::json entry;
      if (name == "plain") {
        m::EngineOptions o;
        o.device = device;
        o.dtype = dtype;
        o.max_batch_size = bs;
        o.max_sequence_length = 80 + a.new_tokens;
        o.tensor_core_gemm = a.tc_gemm;  // the same GEMMs as the SD engine's target steps
        auto engine = m::Engine::Create(target, o).value();
        (void)engine->Generate(warm);
        measure(engine, &seconds, &tokens);
      } else {
        sp::SpeculativeEngineOptions o;
        o.device = device;
        o.dtype = dtype;
        o.max_batch_size = bs;
        o.max_sequence_length = 80 + a.new_tokens;
        o.fused_plain_decode = a.fused_plain_decode;
        o.tensor_core_gemm = a.tc_gemm;
        // NAME[:VARIANT...]: "host" drafts with the host loop (device_draft off), "gemvN" lets
        // target steps of up to N rows take the GEMV path (target_gemv_max_rows), "phases"
        // times the SD step's phases (phase_timing; adds synchronizations), "sharedkeys" runs
        // tree attention by row tiles (tree_attention_shared_keys).
        std::stringstream parts(name);
        std::string base, part;
        std::getline(parts, base, ':');
        if (base == "plain_eager") {
          o.sd_batch_threshold = 0;  // SD never on, every forward eager
          o.fused_plain_decode = false;
          o.fused_verify = false;
        } else if (base == "adaptive") {
          o.adaptive = true;
          o.sd_batch_threshold = 32;
          o.sd_patience = 10;
          if (!a.adaptive_strategies.empty()) {
            o.adaptive_strategies.clear();
            std::stringstream list(a.adaptive_strategies);
            for (std::string arm; std::getline(list, arm, ',');) {
              o.adaptive_strategies.push_back(sp::ParseStrategy(arm).value());
            }
          }
        } else {
          o.strategy = sp::ParseStrategy(base).value();
        }
        while (std::getline(parts, part, ':')) {
          if (part == "host") {
            o.device_draft = false;
          } else if (part == "phases") {
            o.phase_timing = true;
          } else if (part == "sharedkeys") {
            o.tree_attention_shared_keys = true;
          } else if (part.rfind("gemv", 0) == 0) {
            o.target_gemv_max_rows = std::stoll(part.substr(4));
          } else {
            std::cerr << "unknown variant '" << part << "' in " << name << "\n";
            return 2;
          }
        }
        auto engine = sp::SpeculativeEngine::Create(target, drafter, o).value();
        (void)engine->Generate(warm);
        engine->ResetStats();
        measure(engine, &seconds, &tokens, base == "plain_eager" ? 1 : 0);
        const sp::SpeculativeStats& s = engine->stats();
        entry = {{"mean_accept_length", s.mean_accept_length()},
                 {"draft_seconds", s.draft_seconds},
                 {"verify_seconds", s.verify_seconds},
                 {"plain_seconds", s.plain_seconds},
                 {"sd_on_steps", s.sd_on_steps},
                 {"sd_off_steps", s.sd_off_steps}};
        if (!s.phase_seconds.empty()) entry["phase_seconds"] = s.phase_seconds;
      }
      entry["tokens_per_s"] = tokens / seconds;
      entry["tokens"] = tokens;
      entry["seconds"] = seconds;
      row[name] = entry;
      std::cerr << "batch " << bs << " " << name << ": " << tokens / seconds << " tokens/s"
                << (entry.contains("mean_accept_length")
                        ? ", accept length " +
                              std::to_string(entry["mean_accept_length"].get<double>())
                        : std::string())
                << "\n";
    }
    rows.push_back(row);
  }
  result["throughput"] = rows;
  std::cout << result.dump() << std::endl;
  return 0;
}
