// Actor classes used by the runtime's multi-process tests (registered in test_actors.cc,
// which the test binary, and so every worker it spawns, links).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/buffer.h"
#include "runtime/status.h"

namespace tlt::testing {

// Holds a value and a log of every Append, to check order and exactly-once delivery.
class Counter {
 public:
  explicit Counter(int64_t start) : value_(start) {}
  int64_t Add(int64_t x) { return value_ += x; }
  int64_t Get() const { return value_; }
  // Records (caller, seq) so tests can check order and duplicates.
  int64_t Append(std::string caller, int64_t seq) {
    log_.push_back(caller + ":" + std::to_string(seq));
    return int64_t(log_.size());
  }
  std::vector<std::string> Log() const { return log_; }
  std::string Echo(std::string s) { return s; }
  Buffer EchoBytes(Buffer b) { return b; }
  int64_t Throw(std::string message) { throw std::runtime_error(message); }
  Status Fail(std::string message) { return InvalidArgument(message); }
  int64_t Pid() const;
  std::string Gpus() const;  // TLT_SIMULATED_GPUS / CUDA_VISIBLE_DEVICES seen by the worker
  void Crash() const;        // kills its own process (SIGKILL)
  void Sleep(int64_t ms) const;
  // Holds `mb` megabytes of state, moved with the actor.
  void Grow(int64_t mb);
  int64_t StateBytes() const { return int64_t(blob_.size()); }
  Buffer SaveState();
  Status LoadState(Buffer state);

 private:
  int64_t value_;
  std::vector<std::string> log_;
  std::string blob_;
};

// An actor whose constructor throws.
class Broken {
 public:
  explicit Broken(std::string why) { throw std::runtime_error(why); }
  int64_t Get() const { return 0; }
};

}  // namespace tlt::testing
