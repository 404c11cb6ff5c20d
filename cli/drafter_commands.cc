// `tlt drafter init|record|train` and the speculative engine of `tlt generate --drafter`.
#include "cli/drafter_commands.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "cli/model_commands.h"
#include "models/tokenizer.h"
#include "speculative/drafter.h"
#include "speculative/drafter_trainer.h"
#include "speculative/strategy.h"

namespace tlt::cli {
namespace {

namespace sp = tlt::speculative;

Result<torch::Dtype> DtypeFrom(const Flags& flags, torch::Dtype fallback) {
  if (!flags.Has("dtype")) return fallback;
  return models::DtypeFromName(flags.Get("dtype"));
}

Result<int64_t> Integer(const Flags& flags, const std::string& name, int64_t fallback,
                        int64_t min) {
  ASSIGN_OR_RETURN(double v, flags.GetNumber(name, static_cast<double>(fallback)));
  if (v != static_cast<double>(static_cast<int64_t>(v)) || v < min) {
    return InvalidArgument("--" + name + " must be an integer >= " + std::to_string(min));
  }
  return static_cast<int64_t>(v);
}

// Reads a JSON Lines file; errors say FILE:LINE.
Result<std::vector<nlohmann::json>> ReadJsonLines(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open " + path);
  std::vector<nlohmann::json> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const std::exception& e) {
      return InvalidArgument(path + ":" + std::to_string(n) + ": not JSON: " + e.what());
    }
    if (!out.back().is_object()) {
      return InvalidArgument(path + ":" + std::to_string(n) + ": expected a JSON object");
    }
  }
  if (out.empty()) return InvalidArgument(path + " holds no lines");
  return out;
}

Result<std::vector<int64_t>> IdsOf(const nlohmann::json& j, const char* key,
                                   const std::string& where, int64_t vocab) {
  if (!j.contains(key) || !j[key].is_array() || j[key].empty()) {
    return InvalidArgument(where + ": \"" + key + "\" must be a non-empty array of token ids");
  }
  std::vector<int64_t> ids;
  for (const auto& v : j[key]) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab) {
      return InvalidArgument(where + ": \"" + key + "\" holds " + v.dump() +
                             ", not a token id of the target's vocabulary of " +
                             std::to_string(vocab));
    }
    ids.push_back(v.get<int64_t>());
  }
  return ids;
}

void VerboseLogging() {
  if (!std::getenv("GLOG_minloglevel")) FLAGS_minloglevel = 0;
}

}  // namespace

Result<std::unique_ptr<sp::SpeculativeEngine>> SpeculativeEngineFromFlags(
    const Flags& flags, models::Transformer target, const models::EngineOptions& base) {
  if (flags.Has("strategy") && flags.Has("adaptive")) {
    return InvalidArgument("--strategy and --adaptive exclude each other");
  }
  if (flags.Has("strategies") && !flags.Has("adaptive")) {
    return InvalidArgument("--strategies needs --adaptive (use --strategy for one)");
  }
  const bool adaptive = flags.Has("adaptive");
  sp::SpeculativeEngineOptions options;
  options.max_batch_size = base.max_batch_size;
  options.max_sequence_length = base.max_sequence_length;
  options.device = base.device;
  options.dtype = base.dtype;
  options.adaptive = adaptive;
  auto strategy = sp::ParseStrategy(flags.Get("strategy", "8_4_16"));
  if (!strategy.ok()) return strategy.status().WithContext("--strategy");
  options.strategy = *strategy;
  if (flags.Has("strategies")) {
    options.adaptive_strategies.clear();
    std::stringstream ss(flags.Get("strategies"));
    std::string part;
    while (std::getline(ss, part, ',')) {
      auto s = sp::ParseStrategy(part);
      if (!s.ok()) return s.status().WithContext("--strategies");
      options.adaptive_strategies.push_back(*s);
    }
  }
  ASSIGN_OR_RETURN(options.sd_batch_threshold,
                   Integer(flags, "sd-threshold", adaptive ? 32 : INT64_MAX / 2, 0));
  ASSIGN_OR_RETURN(options.sd_patience, Integer(flags, "sd-patience", adaptive ? 10 : 0, 0));
  ASSIGN_OR_RETURN(sp::Drafter drafter, sp::LoadDrafter(flags.Get("drafter"), target));
  return sp::SpeculativeEngine::Create(target, drafter, options);
}

nlohmann::json SpeculativeStatsJson(sp::SpeculativeEngine& engine) {
  const sp::SpeculativeStats& s = engine.stats();
  nlohmann::json histogram = nlohmann::json::object();
  for (const auto& [name, counts] : s.accepted_histogram) histogram[name] = counts;
  nlohmann::json j = {{"mean_accept_length", s.mean_accept_length()},
                      {"accepted_histogram", histogram},
                      {"request_steps", s.steps},
                      {"draft_tokens", s.draft_tokens},
                      {"accepted_tokens", s.accepted_tokens},
                      {"sd_on_steps", s.sd_on_steps},
                      {"sd_off_steps", s.sd_off_steps},
                      {"draft_seconds", s.draft_seconds},
                      {"verify_seconds", s.verify_seconds},
                      {"plain_seconds", s.plain_seconds},
                      {"adaptive", engine.options().adaptive}};
  if (!engine.options().adaptive) j["strategy"] = engine.options().strategy.Name();
  return j;
}

int DrafterInitCommand(const Flags& flags) {
  Status st = flags.Allow({"out", "seed", "device", "dtype"});
  if (!st.ok()) return Fail(st);
  if (flags.words().size() != 3 || !flags.Has("out"))
    return Fail(InvalidArgument("usage: tlt drafter init TARGET_DIR --out DIR [--seed N]"));
  auto seed = Integer(flags, "seed", 0, 0);
  if (!seed.ok()) return Fail(seed.status());
  auto dtype = DtypeFrom(flags, torch::kFloat32);
  if (!dtype.ok()) return Fail(dtype.status());
  auto target = models::LoadTransformer(flags.words()[2], *dtype, torch::kCPU);
  if (!target.ok()) return Fail(target.status());
  sp::Drafter drafter = sp::InitDrafter(*target, static_cast<uint64_t>(*seed));
  st = sp::SaveDrafter(drafter, flags.Get("out"));
  if (!st.ok()) return Fail(st);
  std::cout << "drafter for " << flags.words()[2] << " written to " << flags.Get("out") << "\n";
  return 0;
}

int DrafterRecordCommand(const Flags& flags) {
  Status st = flags.Allow({"prompts", "out", "max-new-tokens", "temperature", "top-k", "top-p",
                           "seed", "samples-per-prompt", "batch-size", "device", "dtype"});
  if (!st.ok()) return Fail(st);
  if (flags.words().size() != 3 || !flags.Has("prompts") || !flags.Has("out"))
    return Fail(InvalidArgument(
        "usage: tlt drafter record TARGET_DIR --prompts FILE --out FILE [--max-new-tokens N "
        "--temperature T --top-k K --top-p P --seed S --samples-per-prompt K --batch-size B]"));
  VerboseLogging();
  const std::string dir = flags.words()[2];
  auto device = DeviceFrom(flags);
  if (!device.ok()) return Fail(device.status());
  auto dtype = DtypeFrom(flags, device->is_cuda() ? torch::kBFloat16 : torch::kFloat32);
  if (!dtype.ok()) return Fail(dtype.status());
  auto max_new = Integer(flags, "max-new-tokens", 128, 1), top_k = Integer(flags, "top-k", 0, 0),
       seed = Integer(flags, "seed", 0, 0), per_prompt = Integer(flags, "samples-per-prompt", 1, 1),
       batch = Integer(flags, "batch-size", 32, 1);
  auto temperature = flags.GetNumber("temperature", 1.0), top_p = flags.GetNumber("top-p", 1.0);
  for (const auto* r : {&max_new, &top_k, &seed, &per_prompt, &batch})
    if (!r->ok()) return Fail(r->status());
  for (const auto* r : {&temperature, &top_p})
    if (!r->ok()) return Fail(r->status());
  auto lines = ReadJsonLines(flags.Get("prompts"));
  if (!lines.ok()) return Fail(lines.status());
  auto model = models::LoadTransformer(dir, *dtype, *device);
  if (!model.ok()) return Fail(model.status());
  const int64_t vocab = (*model)->config().vocab_size;
  std::unique_ptr<models::Tokenizer> tokenizer;
  std::vector<models::Request> requests;
  int64_t longest = 0;
  for (size_t i = 0; i < lines->size(); ++i) {
    const nlohmann::json& j = (*lines)[i];
    const std::string where = flags.Get("prompts") + ":" + std::to_string(i + 1);
    std::vector<int64_t> prompt;
    if (j.contains("prompt") && j["prompt"].is_string()) {
      if (!tokenizer) {
        auto t = models::BpeTokenizer::FromFile(dir + "/tokenizer.json");
        if (!t.ok())
          return Fail(t.status().WithContext(where + ": \"prompt\" text needs a tokenizer"));
        tokenizer = std::move(t).value();
      }
      auto enc = tokenizer->Encode(j["prompt"].get<std::string>());
      if (!enc.ok()) return Fail(enc.status().WithContext(where));
      prompt = *enc;
    } else {
      auto ids = IdsOf(j, "prompt_ids", where, vocab);
      if (!ids.ok()) return Fail(ids.status());
      prompt = *ids;
    }
    longest = std::max<int64_t>(longest, prompt.size());
    for (int64_t k = 0; k < *per_prompt; ++k) {
      models::Request r;
      r.prompt = prompt;
      r.max_new_tokens = *max_new;
      r.temperature = *temperature;
      r.top_k = *top_k;
      r.top_p = *top_p;
      r.seed = static_cast<uint64_t>(*seed) + requests.size();
      r.stop_token_ids = (*model)->config().eos_token_ids;
      requests.push_back(r);
    }
  }
  models::EngineOptions options;
  options.device = *device;
  options.dtype = *dtype;
  options.max_batch_size = std::min<int64_t>(*batch, requests.size());
  options.max_sequence_length = longest + *max_new + 1;
  auto engine = models::Engine::Create(*model, options);
  if (!engine.ok()) return Fail(engine.status());
  std::ofstream out(flags.Get("out"));
  if (!out) return Fail(IoError("cannot write " + flags.Get("out")));
  int64_t written = 0, tokens = 0;
  const auto start = std::chrono::steady_clock::now();
  auto results = (*engine)->Generate(requests);
  if (!results.ok()) return Fail(results.status());
  for (size_t i = 0; i < requests.size(); ++i) {
    std::vector<int64_t> all = requests[i].prompt;
    all.insert(all.end(), (*results)[i].tokens.begin(), (*results)[i].tokens.end());
    out << nlohmann::json{{"tokens", all}, {"prompt_length", requests[i].prompt.size()}}.dump()
        << "\n";
    ++written;
    tokens += (*results)[i].tokens.size();
  }
  if (!out.flush()) return Fail(IoError("writing " + flags.Get("out")));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  LOG(INFO) << "recorded " << written << " sequences, " << tokens << " response tokens in "
            << seconds << " s";
  std::cout << written << " sequences (" << tokens << " response tokens) written to "
            << flags.Get("out") << "\n";
  return 0;
}

int DrafterTrainCommand(const Flags& flags) {
  Status st = flags.Allow({"drafter", "data", "steps", "lr", "batch-size", "window", "seed",
                           "log-every", "out", "device", "dtype", "json"});
  if (!st.ok()) return Fail(st);
  if (flags.words().size() != 3 || !flags.Has("drafter") || !flags.Has("data"))
    return Fail(InvalidArgument(
        "usage: tlt drafter train TARGET_DIR --drafter DIR --data FILE [--steps N --lr X "
        "--batch-size N --window N --seed S --log-every N --out DIR] [--json]"));
  VerboseLogging();
  auto device = DeviceFrom(flags);
  if (!device.ok()) return Fail(device.status());
  auto dtype = DtypeFrom(flags, torch::kFloat32);
  if (!dtype.ok()) return Fail(dtype.status());
  auto steps = Integer(flags, "steps", 100, 1), batch = Integer(flags, "batch-size", 8, 1),
       window = Integer(flags, "window", 512, 2), seed = Integer(flags, "seed", 0, 0),
       log_every = Integer(flags, "log-every", 10, 1);
  auto lr = flags.GetNumber("lr", sp::DrafterTrainerOptions::OfflineDefaults().learning_rate);
  for (const auto* r : {&steps, &batch, &window, &seed, &log_every})
    if (!r->ok()) return Fail(r->status());
  if (!lr.ok()) return Fail(lr.status());
  if (!(*lr > 0)) return Fail(InvalidArgument("--lr must be > 0"));
  auto target = models::LoadTransformer(flags.words()[2], *dtype, *device);
  if (!target.ok()) return Fail(target.status());
  (*target)->eval();
  const std::string drafter_dir = flags.Get("drafter"), out_dir = flags.Get("out", drafter_dir);
  auto drafter = sp::LoadDrafter(drafter_dir, *target);
  if (!drafter.ok()) return Fail(drafter.status());
  auto lines = ReadJsonLines(flags.Get("data"));
  if (!lines.ok()) return Fail(lines.status());
  std::vector<sp::DrafterSample> data;
  const int64_t vocab = (*target)->config().vocab_size;
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < lines->size(); ++i) {
      const std::string where = flags.Get("data") + ":" + std::to_string(i + 1);
      const nlohmann::json& j = (*lines)[i];
      auto ids = IdsOf(j, "tokens", where, vocab);
      if (!ids.ok()) return Fail(ids.status());
      if (!j.contains("prompt_length") || !j["prompt_length"].is_number_integer() ||
          j["prompt_length"].get<int64_t>() < 1 ||
          j["prompt_length"].get<int64_t>() >= static_cast<int64_t>(ids->size())) {
        return Fail(InvalidArgument(where + ": \"prompt_length\" must be an integer in [1, " +
                                    std::to_string(ids->size() - 1) + "]"));
      }
      sp::DrafterSample s;
      s.tokens = *ids;
      s.prompt_length = j["prompt_length"].get<int64_t>();
      const int64_t n = static_cast<int64_t>(s.tokens.size());
      s.hidden = (*target)
                     ->Forward(torch::tensor(s.tokens, torch::kInt64).unsqueeze(0).to(*device),
                               models::BatchLayout::Dense(1, n, *device), nullptr,
                               models::ForwardOptions().return_hidden(true))
                     .hidden[0];
      data.push_back(std::move(s));
    }
  }
  LOG(INFO) << "drafter train: " << data.size() << " sequences from " << flags.Get("data");
  sp::DrafterTrainerOptions options = sp::DrafterTrainerOptions::OfflineDefaults();
  options.learning_rate = *lr;
  options.window = *window;
  sp::DrafterTrainer trainer(*target, *drafter, options);
  std::ifstream optimizer(drafter_dir + "/optimizer.safetensors");
  if (optimizer) {
    st = trainer.LoadCheckpoint(drafter_dir);
    if (!st.ok()) return Fail(st);
    LOG(INFO) << "drafter train: resumed at step " << trainer.step();
  }
  std::mt19937_64 rng(static_cast<uint64_t>(*seed));
  std::vector<size_t> order(data.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  size_t next = order.size();
  sp::DrafterTrainStats first, last;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < *steps; ++step) {
    std::vector<sp::DrafterSample> batch_samples;
    while (static_cast<int64_t>(batch_samples.size()) <
           std::min<int64_t>(*batch, static_cast<int64_t>(data.size()))) {
      if (next == order.size()) {
        std::shuffle(order.begin(), order.end(), rng);
        next = 0;
      }
      batch_samples.push_back(data[order[next++]]);
    }
    auto stats = trainer.TrainStep(batch_samples);
    if (!stats.ok()) return Fail(stats.status());
    if (step == 0) first = *stats;
    last = *stats;
    if (step == 0 || (step + 1) % *log_every == 0 || step + 1 == *steps) {
      LOG(INFO) << "drafter train step " << stats->step << ": loss " << stats->loss << " (hidden "
                << stats->hidden_loss << ", logits " << stats->logit_loss << "), top-1 "
                << stats->top1_accuracy << ", grad norm " << stats->grad_norm << ", "
                << stats->tokens << " tokens";
    }
  }
  st = trainer.SaveCheckpoint(out_dir);
  if (!st.ok()) return Fail(st);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json j = {{"steps", *steps},
                      {"optimizer_step", trainer.step()},
                      {"first_loss", first.loss},
                      {"last_loss", last.loss},
                      {"top1_accuracy", last.top1_accuracy},
                      {"sequences", data.size()},
                      {"seconds", seconds},
                      {"out", out_dir}};
  if (flags.Has("json")) {
    std::cout << j.dump() << "\n";
  } else {
    std::cout << "trained " << *steps << " steps in " << seconds << " s: loss " << first.loss
              << " -> " << last.loss << ", top-1 " << last.top1_accuracy << "; drafter in "
              << out_dir << "\n";
  }
  return 0;
}

}  // namespace tlt::cli
