// `tlt model info DIR`, `tlt model logits DIR --ids ...`, `tlt generate DIR ...`: the
// models/ engine (and with --drafter the speculative engine) from the terminal, for people
// (text) and scripts (--json).
#include "cli/model_commands.h"

#include <torch/torch.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/drafter_commands.h"
#include "cli/format.h"
#include "models/engine.h"
#include "models/tokenizer.h"
#include "models/transformer.h"

namespace tlt::cli {

int Fail(const Status& st) {
  std::cerr << "tlt: " << st.ToString() << "\n";
  return 1;
}

Result<std::vector<int64_t>> ParseIds(const std::string& text, const std::string& flag) {
  std::vector<int64_t> ids;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      size_t used = 0;
      ids.push_back(std::stoll(part, &used));
      if (used != part.size()) throw std::invalid_argument(part);
    } catch (...) {
      return InvalidArgument("--" + flag + ": '" + part + "' is not a token id (use 1,2,3)");
    }
  }
  if (ids.empty()) return InvalidArgument("--" + flag + " is empty");
  return ids;
}

Result<torch::Device> DeviceFrom(const Flags& flags) {
  std::string d = flags.Get("device", torch::cuda::is_available() ? "cuda" : "cpu");
  if (d == "cpu") return torch::Device(torch::kCPU);
  if (d.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available()) return InvalidArgument("--device cuda: no CUDA device here");
    return torch::Device(d);
  }
  return InvalidArgument("--device must be cpu or cuda[:N], got '" + d + "'");
}

namespace {

// The tokenizer.json beside the checkpoint, if any.
std::unique_ptr<models::Tokenizer> TokenizerIn(const std::string& dir) {
  std::ifstream probe(dir + "/tokenizer.json");
  if (!probe) return nullptr;
  auto t = models::BpeTokenizer::FromFile(dir + "/tokenizer.json");
  if (!t.ok()) {
    std::cerr << "tlt: warning: " << t.status().ToString() << "\n";
    return nullptr;
  }
  return std::move(t).value();
}

}  // namespace

int ModelInfoCommand(const Flags& flags) {
  Status st = flags.Allow({"json"});
  if (!st.ok()) return Fail(st);
  if (flags.words().size() != 3) return Fail(InvalidArgument("usage: tlt model info DIR [--json]"));
  const std::string dir = flags.words()[2];
  auto config = models::ReadModelConfig(dir + "/config.json");
  if (!config.ok()) return Fail(config.status());
  const auto& c = *config;
  const int64_t head_dim = c.head_dim;
  int64_t params = c.vocab_size * c.hidden_size * (c.tie_word_embeddings ? 1 : 2) + c.hidden_size;
  const int64_t q = c.num_attention_heads * head_dim, kv = c.num_key_value_heads * head_dim;
  params += c.num_hidden_layers *
            (c.hidden_size * (q + 2 * kv) + q * c.hidden_size + 3 * c.hidden_size * c.intermediate_size +
             2 * c.hidden_size + (c.attention_bias ? q + 2 * kv : 0));
  nlohmann::json j = nlohmann::json::parse(models::ModelConfigToJson(c));
  j["parameters"] = params;
  j["kv_bytes_per_token_bf16"] = c.KvBytesPerToken(2);
  j["has_tokenizer"] = bool(std::ifstream(dir + "/tokenizer.json"));
  if (flags.Has("json")) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << Table({"FIELD", "VALUE"},
                     {{"architecture", c.model_type},
                      {"parameters", std::to_string(params)},
                      {"layers", std::to_string(c.num_hidden_layers)},
                      {"hidden / intermediate", std::to_string(c.hidden_size) + " / " +
                                                    std::to_string(c.intermediate_size)},
                      {"heads / kv heads / head dim",
                       std::to_string(c.num_attention_heads) + " / " +
                           std::to_string(c.num_key_value_heads) + " / " + std::to_string(head_dim)},
                      {"vocab", std::to_string(c.vocab_size)},
                      {"rope theta", std::to_string(c.rope_theta)},
                      {"tied embeddings", c.tie_word_embeddings ? "yes" : "no"},
                      {"q/k/v bias", c.attention_bias ? "yes" : "no"},
                      {"dtype", c.torch_dtype},
                      {"KV bytes per token (bf16)", FormatBytes(uint64_t(c.KvBytesPerToken(2)))},
                      {"tokenizer.json", j["has_tokenizer"] ? "yes" : "no"}});
  return 0;
}

int ModelLogitsCommand(const Flags& flags) {
  Status st = flags.Allow({"ids", "json", "device"});
  if (!st.ok()) return Fail(st);
  if (flags.words().size() != 3 || !flags.Has("ids"))
    return Fail(InvalidArgument("usage: tlt model logits DIR --ids 1,2,3 [--json]"));
  auto ids = ParseIds(flags.Get("ids"), "ids");
  if (!ids.ok()) return Fail(ids.status());
  auto device = DeviceFrom(flags);
  if (!device.ok()) return Fail(device.status());
  auto model = models::LoadTransformer(flags.words()[2], torch::kFloat32, *device);
  if (!model.ok()) return Fail(model.status());
  for (int64_t id : *ids)
    if (id < 0 || id >= (*model)->config().vocab_size)
      return Fail(InvalidArgument("--ids: token " + std::to_string(id) + " is outside the vocabulary of " +
                                  std::to_string((*model)->config().vocab_size)));
  torch::NoGradGuard no_grad;
  auto tokens = torch::tensor(*ids, torch::kLong).unsqueeze(0).to(*device);
  torch::Tensor logits = (*model)->forward(tokens)[0].to(torch::kCPU).to(torch::kFloat64);
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t t = 0; t < logits.size(0); ++t) {
    auto row = logits[t];
    std::vector<double> v(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
    rows.push_back(v);
  }
  if (flags.Has("json")) {
    std::cout << nlohmann::json{{"logits", rows}}.dump() << "\n";
    return 0;
  }
  for (int64_t t = 0; t < logits.size(0); ++t) {
    auto [values, indices] = logits[t].topk(std::min<int64_t>(5, logits.size(1)));
    std::cout << "position " << t << " (token " << (*ids)[t] << "): top ";
    for (int64_t k = 0; k < values.size(0); ++k)
      std::cout << indices[k].item<int64_t>() << "=" << values[k].item<double>() << " ";
    std::cout << "\n";
  }
  return 0;
}

int GenerateCommand(const Flags& flags) {
  Status st = flags.Allow({"prompt", "prompt-ids", "max-new-tokens", "temperature", "top-k",
                           "top-p", "seed", "num-samples", "json", "device", "dtype",
                           "drafter", "strategy", "adaptive", "strategies", "sd-threshold",
                           "sd-patience"});
  if (!st.ok()) return Fail(st);
  if (flags.words().size() != 2 || flags.Has("prompt") == flags.Has("prompt-ids"))
    return Fail(InvalidArgument(
        "usage: tlt generate DIR (--prompt TEXT | --prompt-ids 1,2,3) --max-new-tokens N "
        "[--temperature T --top-k K --top-p P --seed S --num-samples K] "
        "[--drafter DIR [--strategy 8_4_16 | --adaptive]] [--json]"));
  if (!flags.Has("drafter") && (flags.Has("strategy") || flags.Has("adaptive") ||
                                 flags.Has("strategies") || flags.Has("sd-threshold") ||
                                 flags.Has("sd-patience")))
    return Fail(InvalidArgument("--strategy/--adaptive/--sd-* need --drafter DIR"));
  const std::string dir = flags.words()[1];
  auto device = DeviceFrom(flags);
  if (!device.ok()) return Fail(device.status());
  auto tokenizer = TokenizerIn(dir);
  std::vector<int64_t> prompt;
  if (flags.Has("prompt")) {
    if (!tokenizer) return Fail(InvalidArgument(dir + " has no tokenizer.json: use --prompt-ids"));
    auto enc = tokenizer->Encode(flags.Get("prompt"));
    if (!enc.ok()) return Fail(enc.status());
    prompt = *enc;
  } else {
    auto ids = ParseIds(flags.Get("prompt-ids"), "prompt-ids");
    if (!ids.ok()) return Fail(ids.status());
    prompt = *ids;
  }
  auto number = [&](const char* name, double fallback) { return flags.GetNumber(name, fallback); };
  auto max_new = number("max-new-tokens", 32), temperature = number("temperature", 1.0),
       top_k = number("top-k", 0), top_p = number("top-p", 1.0), seed = number("seed", 0),
       samples = number("num-samples", 1);
  for (const auto* r : {&max_new, &temperature, &top_k, &top_p, &seed, &samples})
    if (!r->ok()) return Fail(r->status());
  torch::Dtype dtype = device->is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  if (flags.Has("dtype")) {
    auto d = models::DtypeFromName(flags.Get("dtype"));
    if (!d.ok()) return Fail(d.status());
    dtype = *d;
  }
  auto model = models::LoadTransformer(dir, dtype, *device);
  if (!model.ok()) return Fail(model.status());
  models::EngineOptions options;
  options.device = *device;
  options.dtype = dtype;
  options.max_batch_size = std::max<int64_t>(1, int64_t(*samples));
  options.max_sequence_length = int64_t(prompt.size()) + int64_t(*max_new) + 1;
  std::unique_ptr<models::Engine> plain;
  std::unique_ptr<speculative::SpeculativeEngine> spec;
  if (flags.Has("drafter")) {
    auto engine = SpeculativeEngineFromFlags(flags, *model, options);
    if (!engine.ok()) return Fail(engine.status());
    spec = std::move(engine).value();
  } else {
    auto engine = models::Engine::Create(*model, options);
    if (!engine.ok()) return Fail(engine.status());
    plain = std::move(engine).value();
  }
  std::vector<models::Request> requests;
  for (int i = 0; i < int(*samples); ++i) {
    models::Request r;
    r.prompt = prompt;
    r.max_new_tokens = int64_t(*max_new);
    r.temperature = *temperature;
    r.top_k = int64_t(*top_k);
    r.top_p = *top_p;
    r.seed = uint64_t(*seed) + uint64_t(i);
    r.stop_token_ids = (*model)->config().eos_token_ids;
    requests.push_back(r);
  }
  auto start = std::chrono::steady_clock::now();
  auto results = spec ? spec->Generate(requests) : plain->Generate(requests);
  if (!results.ok()) return Fail(results.status());
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t generated = 0;
  nlohmann::json out_samples = nlohmann::json::array();
  for (const auto& r : *results) {
    generated += int64_t(r.tokens.size());
    nlohmann::json s = {{"tokens", r.tokens}, {"logprobs", r.logprobs},
                        {"finish_reason", models::FinishReasonName(r.finish_reason)}};
    if (tokenizer) {
      auto text = tokenizer->Decode(r.tokens);
      s["text"] = text.ok() ? *text : "";
    } else {
      s["text"] = nullptr;
    }
    out_samples.push_back(s);
  }
  nlohmann::json stats = {{"prompt_tokens", prompt.size()},
                          {"generated_tokens", generated},
                          {"seconds", seconds},
                          {"tokens_per_s", seconds > 0 ? generated / seconds : 0.0},
                          {"device", device->str()}};
  if (spec) stats["speculative"] = SpeculativeStatsJson(*spec);
  if (flags.Has("json")) {
    std::cout << nlohmann::json{{"samples", out_samples}, {"stats", stats}}.dump() << "\n";
    return 0;
  }
  for (size_t i = 0; i < out_samples.size(); ++i) {
    const auto& s = out_samples[i];
    std::cout << "sample " << i << " (" << s["finish_reason"].get<std::string>() << "): ";
    if (s["text"].is_string()) std::cout << s["text"].get<std::string>() << "\n";
    else std::cout << s["tokens"].dump() << "\n";
  }
  std::cout << generated << " tokens in " << seconds << " s (" << stats["tokens_per_s"].get<double>()
            << " tokens/s)\n";
  if (spec) {
    const auto& sd = stats["speculative"];
    std::cout << "speculative: mean accepted length " << sd["mean_accept_length"].get<double>()
              << ", " << sd["sd_on_steps"].get<int64_t>() << " SD steps, "
              << sd["sd_off_steps"].get<int64_t>() << " plain steps, draft "
              << sd["draft_seconds"].get<double>() << " s, verify "
              << sd["verify_seconds"].get<double>() << " s\n";
  }
  return 0;
}

}  // namespace tlt::cli
