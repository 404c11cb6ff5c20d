// GrpoTrainer and checkpoints (one LibTorch translation unit: each is slow to compile).
#include "rl/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "rl/checkpoint.h"
#include "rl/checkpoint_store.h"
#include "runtime/file_util.h"

namespace tlt::rl {
namespace fs = std::filesystem;

// ---------------------------------------------------------------- checkpoints
namespace {

void SyncPath(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

Status SaveCheckpoint(const std::string& dir, Learner& learner, const TrainingState& state) {
  const fs::path final_dir(dir);
  if (fs::exists(final_dir)) return InvalidArgument("checkpoint " + dir + " already exists");
  const fs::path tmp = final_dir.string() + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  (void)::tlt::RemoveTree(std::string(tmp));
  fs::create_directories(tmp / "policy", ec);
  if (ec) return IoError("cannot create " + tmp.string() + ": " + ec.message());
  try {
    RETURN_NOT_OK(models::SaveTransformer(learner.policy(), (tmp / "policy").string()));
    torch::serialize::OutputArchive optimizer;
    learner.optimizer().save(optimizer);
    optimizer.save_to((tmp / "optimizer.pt").string());
    torch::Tensor rng = at::detail::getDefaultCPUGenerator().get_state();
    torch::save(rng, (tmp / "rng.pt").string());
  } catch (const c10::Error& e) {
    return IoError("writing checkpoint " + dir + ": " + e.what_without_backtrace());
  }
  nlohmann::json s;
  s["step"] = state.step;
  s["optimizer_steps"] = learner.optimizer_steps();
  s["cursor"] = {{"seed", state.cursor.seed},
                 {"epoch", state.cursor.epoch},
                 {"position", state.cursor.position}};
  RETURN_NOT_OK(WriteFileSynced((tmp / "state.json").string(), s.dump(2)));
  RETURN_NOT_OK(WriteCheckpointManifest(tmp.string()));
  SyncPath(tmp / "policy");
  SyncPath(tmp);
  fs::rename(tmp, final_dir, ec);
  if (ec) return IoError("renaming " + tmp.string() + " to " + dir + ": " + ec.message());
  SyncPath(final_dir.parent_path().empty() ? fs::path(".") : final_dir.parent_path());
  return Status::OK();
}

Status LoadCheckpoint(const std::string& dir, Learner* learner, TrainingState* state) {
  const fs::path root(dir);
  RETURN_NOT_OK(VerifyCheckpoint(dir));
  auto config = models::ReadModelConfig((root / "policy/config.json").string());
  if (!config.ok()) return config.status().WithContext("checkpoint " + dir);
  ASSIGN_OR_RETURN(models::CheckpointTensors tensors,
                   models::ReadCheckpointTensors((root / "policy").string()));
  Status loaded = learner->policy()->LoadTensors(tensors);
  if (!loaded.ok()) {
    return InvalidArgument("checkpoint " + dir +
                           " does not match the learner's model: " + loaded.message());
  }
  ASSIGN_OR_RETURN(std::string state_text, ReadFile(root / "state.json"));
  nlohmann::json s = nlohmann::json::parse(state_text, nullptr, false);
  try {
    torch::serialize::InputArchive optimizer;
    optimizer.load_from((root / "optimizer.pt").string());
    learner->optimizer().load(optimizer);
    torch::Tensor rng;
    torch::load(rng, (root / "rng.pt").string());
    at::Generator generator = at::detail::getDefaultCPUGenerator();  // shares the default
    generator.set_state(rng);
    state->step = s.at("step").get<int64_t>();
    learner->set_optimizer_steps(s.at("optimizer_steps").get<int64_t>());
    state->cursor.seed = s.at("cursor").at("seed").get<uint64_t>();
    state->cursor.epoch = s.at("cursor").at("epoch").get<int64_t>();
    state->cursor.position = s.at("cursor").at("position").get<int64_t>();
  } catch (const c10::Error& e) {
    return InvalidArgument("checkpoint " + dir +
                           ": optimizer or RNG state does not load: " + e.what_without_backtrace());
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument("checkpoint " + dir + ": bad state.json: " + e.what());
  }
  return Status::OK();
}

// ---------------------------------------------------------------- trainer
TextCodec CodecFromCharVocab(const CharVocab& vocab) {
  TextCodec c;
  c.encode = [&vocab](const std::string& s) { return vocab.Encode(s); };
  c.decode = [&vocab](const std::vector<int64_t>& ids) { return vocab.Decode(ids); };
  c.stop_token_id = vocab.eos_id();
  return c;
}

Result<std::vector<Sample>> MakeSftSamples(const std::vector<Example>& examples,
                                           const TextCodec& codec, const PromptTemplate& prompt,
                                           const std::string& response_field) {
  std::vector<Sample> out;
  for (const Example& e : examples) {
    ASSIGN_OR_RETURN(std::string text, prompt.Apply(e));
    Sample s;
    ASSIGN_OR_RETURN(s.prompt, codec.encode(text));
    auto it = e.fields.find(response_field);
    ASSIGN_OR_RETURN(s.response, codec.encode(it != e.fields.end() ? it->second : e.answer));
    if (codec.stop_token_id >= 0) s.response.push_back(codec.stop_token_id);
    out.push_back(std::move(s));
  }
  return out;
}

GrpoTrainer::GrpoTrainer(Learner* learner, std::vector<Example> data, TextCodec codec,
                         RewardFunction reward, const GrpoTrainerOptions& options)
    : learner_(learner),
      data_(std::move(data)),
      codec_(std::move(codec)),
      reward_(std::move(reward)),
      options_(options),
      cursor_(static_cast<int64_t>(data_.size()), options.seed) {}

Result<std::unique_ptr<GrpoTrainer>> GrpoTrainer::Create(Learner* learner,
                                                         std::vector<Example> data, TextCodec codec,
                                                         RewardFunction reward,
                                                         const GrpoTrainerOptions& options) {
  if (data.empty()) return InvalidArgument("GrpoTrainer: empty dataset");
  if (!reward) return InvalidArgument("GrpoTrainer: no reward function");
  std::unique_ptr<GrpoTrainer> t(
      new GrpoTrainer(learner, std::move(data), std::move(codec), std::move(reward), options));
  try {
    models::Transformer rollout_model(learner->policy()->config());
    ASSIGN_OR_RETURN(t->engine_, models::Engine::Create(rollout_model, options.engine));
  } catch (const c10::Error& e) {
    return Internal(std::string("GrpoTrainer: ") + e.what_without_backtrace());
  }
  if (!options.metrics_path.empty()) {
    ASSIGN_OR_RETURN(t->metrics_, MetricsWriter::Open(options.metrics_path));
  }
  return t;
}

Result<GrpoTrainer::Rollout> GrpoTrainer::Generate(const std::vector<const Example*>& examples,
                                                   int64_t samples, double temperature,
                                                   uint64_t seed) {
  RETURN_NOT_OK(engine_->LoadWeights(learner_->ExportWeights()));
  std::vector<models::Request> requests;
  Rollout out;
  for (size_t i = 0; i < examples.size(); ++i) {
    ASSIGN_OR_RETURN(std::string text, options_.prompt_template.Apply(*examples[i]));
    ASSIGN_OR_RETURN(std::vector<int64_t> prompt, codec_.encode(text));
    for (int64_t j = 0; j < samples; ++j) {
      models::Request r;
      r.prompt = prompt;
      r.max_new_tokens = options_.max_new_tokens;
      r.temperature = temperature;
      r.top_k = options_.top_k;
      r.top_p = options_.top_p;
      r.seed = seed * 0x9E3779B97F4A7C15ULL + i * 1000003ULL + static_cast<uint64_t>(j);
      if (codec_.stop_token_id >= 0) r.stop_token_ids = {codec_.stop_token_id};
      requests.push_back(std::move(r));
    }
  }
  ASSIGN_OR_RETURN(std::vector<models::RequestResult> results, engine_->Generate(requests));
  for (size_t k = 0; k < results.size(); ++k) {
    std::vector<int64_t> body = results[k].tokens;
    if (!body.empty() && body.back() == codec_.stop_token_id) body.pop_back();
    ASSIGN_OR_RETURN(std::string response, codec_.decode(body));
    out.rewards.push_back(reward_(response, *examples[k / samples]));
    Sample s;
    s.prompt = requests[k].prompt;
    s.response = results[k].tokens;
    out.samples.push_back(std::move(s));
    out.logprobs.push_back(results[k].logprobs);
  }
  return out;
}

Result<MetricsRecord> GrpoTrainer::Step() {
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  const auto t0 = Clock::now();
  std::vector<const Example*> prompts;
  for (int64_t i : cursor_.Next(options_.prompts_per_step)) prompts.push_back(&data_[i]);
  ASSIGN_OR_RETURN(Rollout rollout, Generate(prompts, options_.group_size, options_.temperature,
                                             options_.seed * 7919 + static_cast<uint64_t>(step_)));
  const auto t1 = Clock::now();
  std::vector<double> adv =
      GroupAdvantages(rollout.rewards, options_.group_size, options_.advantage);
  std::vector<double> lengths;
  double reward_sum = 0, correct = 0;
  for (size_t i = 0; i < rollout.samples.size(); ++i) {
    rollout.samples[i].advantage = adv[i];
    lengths.push_back(double(rollout.samples[i].response.size()));
    reward_sum += rollout.rewards[i];
    correct += rollout.rewards[i] >= options_.correct_reward;
  }
  int64_t dropped = 0;
  if (options_.drop_zero_advantage_groups) {
    std::vector<Sample> kept;
    std::vector<std::vector<float>> kept_logprobs;
    const size_t g = static_cast<size_t>(options_.group_size);
    for (size_t begin = 0; begin < rollout.samples.size(); begin += g) {
      bool zero = true;
      for (size_t i = begin; i < begin + g; ++i) zero = zero && adv[i] == 0.0;
      if (zero) {
        ++dropped;
        continue;
      }
      for (size_t i = begin; i < begin + g; ++i) {
        kept.push_back(std::move(rollout.samples[i]));
        kept_logprobs.push_back(std::move(rollout.logprobs[i]));
      }
    }
    rollout.samples = std::move(kept);
    rollout.logprobs = std::move(kept_logprobs);
  }
  MetricsRecord m;
  if (rollout.samples.empty()) {  // every group dropped: nothing to learn from
    m["lr"] = learner_->CurrentLr();
    m["skipped"] = 1;
  } else {
    std::vector<std::vector<double>> old;
    try {
      old = learner_->ResponseLogProbs(rollout.samples);  // the learner's, never the engine's
    } catch (const c10::Error& e) {
      return Internal(std::string("GrpoTrainer: ") + e.what_without_backtrace());
    }
    double gap = 0, tokens = 0;
    for (size_t i = 0; i < old.size(); ++i) {
      for (size_t t = 0; t < old[i].size() && t < rollout.logprobs[i].size(); ++t) {
        gap += std::abs(old[i][t] - rollout.logprobs[i][t]);
        tokens += 1;
      }
    }
    ASSIGN_OR_RETURN(m, learner_->GrpoStep(rollout.samples, old));
    if (tokens > 0) m["rollout_logprob_gap"] = gap / tokens;
  }
  const auto t2 = Clock::now();
  ++step_;
  m["step"] = double(step_);
  m["reward_mean"] = reward_sum / rollout.rewards.size();
  m["accuracy"] = correct / rollout.rewards.size();
  m["groups_dropped"] = double(dropped);
  AddDistribution("response_length", lengths, &m);
  m["time_rollout_s"] = seconds(t0, t1);
  m["time_update_s"] = seconds(t1, t2);
  m["time_step_s"] = seconds(t0, t2);
  if (options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0) {
    RETURN_NOT_OK(SaveStepCheckpoint().status());
    m["time_checkpoint_s"] = seconds(t2, Clock::now());
  }
  if (metrics_) RETURN_NOT_OK(metrics_->Write(m));
  return m;
}

Result<Evaluation> GrpoTrainer::Evaluate(const std::vector<Example>& examples, int64_t samples,
                                         double temperature, uint64_t seed) {
  std::vector<const Example*> prompts;
  for (const Example& e : examples) prompts.push_back(&e);
  ASSIGN_OR_RETURN(Rollout r, Generate(prompts, samples, temperature, seed));
  Evaluation ev;
  for (size_t i = 0; i < r.rewards.size(); ++i) {
    ev.reward_mean += r.rewards[i] / r.rewards.size();
    ev.accuracy += (r.rewards[i] >= options_.correct_reward ? 1.0 : 0.0) / r.rewards.size();
    ev.lengths.push_back(double(r.samples[i].response.size()));
  }
  return ev;
}

Status GrpoTrainer::SaveCheckpoint(const std::string& dir) {
  TrainingState s;
  s.step = step_;
  s.cursor = cursor_.state();
  return rl::SaveCheckpoint(dir, *learner_, s);
}

Result<std::string> GrpoTrainer::SaveStepCheckpoint() {
  if (options_.checkpoint_root.empty())
    return InvalidArgument("SaveStepCheckpoint: no checkpoint_root");
  std::error_code ec;
  fs::create_directories(options_.checkpoint_root, ec);
  if (ec) return IoError("cannot create " + options_.checkpoint_root + ": " + ec.message());
  const std::string dir = (fs::path(options_.checkpoint_root) / CheckpointName(step_)).string();
  RETURN_NOT_OK(SaveCheckpoint(dir));
  RETURN_NOT_OK(PruneCheckpoints(options_.checkpoint_root, options_.keep_checkpoints, dir));
  return dir;
}

Result<std::string> GrpoTrainer::RestoreLatestCheckpoint() {
  if (options_.checkpoint_root.empty())
    return InvalidArgument("RestoreLatestCheckpoint: no checkpoint_root");
  ASSIGN_OR_RETURN(std::string dir, LatestValidCheckpoint(options_.checkpoint_root));
  RETURN_NOT_OK(RestoreCheckpoint(dir));
  return dir;
}

Status GrpoTrainer::RestoreCheckpoint(const std::string& dir) {
  TrainingState s;
  RETURN_NOT_OK(rl::LoadCheckpoint(dir, learner_, &s));
  RETURN_NOT_OK(cursor_.Restore(s.cursor));
  step_ = s.step;
  return Status::OK();
}

}  // namespace tlt::rl
