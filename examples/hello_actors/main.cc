// hello_actors: a tiny RL-shaped pipeline as actors. A Generator actor "rolls out"
// answers to arithmetic prompts, a Verifier actor scores them, and the driver moves the
// Generator to another worker halfway through (as the placement controller moves the
// drafter trainer onto idle GPUs) without the calls noticing.
//
//   hello_actors                      # embedded head and node on this machine
//   hello_actors --address HOST:PORT  # on a cluster started with `tlt start --head`
#include <iostream>
#include <random>
#include <sstream>
#include <string>

#include "runtime/cluster.h"

// Produces answers; wrong ones now and then, like an imperfect policy.
class Generator {
 public:
  explicit Generator(int64_t seed) : rng_(seed) {}
  std::vector<int64_t> Generate(std::vector<std::pair<int64_t, int64_t>> prompts) {
    std::vector<int64_t> answers;
    for (auto [a, b] : prompts) answers.push_back(a + b + (rng_() % 4 == 0 ? 1 : 0));
    ++batches_;
    return answers;
  }
  int64_t Batches() const { return batches_; }
  // Checkpoint: everything that must survive a move (batch count and random state).
  std::string SaveState() {
    std::ostringstream out;
    out << batches_ << " " << rng_;
    return out.str();
  }
  void LoadState(std::string s) {
    std::istringstream in(s);
    in >> batches_ >> rng_;
  }

 private:
  std::mt19937_64 rng_;
  int64_t batches_ = 0;
};

class Verifier {
 public:
  Verifier() = default;
  double Score(std::vector<std::pair<int64_t, int64_t>> prompts, std::vector<int64_t> answers) {
    int correct = 0;
    for (size_t i = 0; i < prompts.size(); ++i)
      correct += answers[i] == prompts[i].first + prompts[i].second;
    return double(correct) / double(prompts.size());
  }
};

TLT_ACTOR(Generator)
    .Constructor<int64_t>()
    .Method("Generate", &Generator::Generate)
    .Method("Batches", &Generator::Batches)
    .Checkpoint(&Generator::SaveState, &Generator::LoadState);
TLT_ACTOR(Verifier).Constructor<>().Method("Score", &Verifier::Score);

int main(int argc, char** argv) {
  tlt::Init(argc, argv);
  tlt::Cluster::Options options;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--address") options.address = argv[i + 1];
  auto cluster = tlt::Cluster::Connect(options);
  if (!cluster.ok()) {
    std::cerr << "hello_actors: " << cluster.status().ToString() << "\n";
    return 1;
  }
  auto& c = **cluster;
  auto generator = c.Create<Generator>(tlt::ActorOptions().Name("generator"), 7).value();
  auto verifier = c.Create<Verifier>(tlt::ActorOptions().Name("verifier")).value();
  std::mt19937_64 rng(1);
  for (int step = 0; step < 6; ++step) {
    std::vector<std::pair<int64_t, int64_t>> prompts;
    for (int i = 0; i < 64; ++i) prompts.push_back({int64_t(rng() % 100), int64_t(rng() % 100)});
    auto answers = generator.Call(&Generator::Generate, prompts).Get(tlt::Millis(30000));
    if (!answers.ok()) {
      std::cerr << "generate failed: " << answers.status().ToString() << "\n";
      return 1;
    }
    double accuracy = *verifier.Call(&Verifier::Score, prompts, *answers).Get(tlt::Millis(30000));
    std::cout << "step " << step << ": accuracy " << accuracy << "\n";
    if (step == 2) {
      auto moved = c.Migrate(generator.id());
      if (!moved.ok()) {
        std::cerr << "migration failed: " << moved.status().ToString() << "\n";
        return 1;
      }
      std::cout << "moved the generator to worker pid " << moved->pid << "\n";
    }
  }
  std::cout << "generator ran " << *generator.Call(&Generator::Batches).Get() << " batches\n";
  return 0;
}
