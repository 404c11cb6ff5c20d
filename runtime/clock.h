// Clock: the time source of every asynchronous class, injected so tests can drive time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tlt {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds on a monotonic scale (not wall time).
  virtual int64_t NowMs() const = 0;
  // Milliseconds since the Unix epoch, for event timestamps people read.
  virtual int64_t WallMs() const = 0;
};

class SystemClock : public Clock {
 public:
  int64_t NowMs() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  }
  int64_t WallMs() const override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
  static SystemClock* Get() {
    static SystemClock clock;
    return &clock;
  }
};

// A clock that moves only when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  int64_t NowMs() const override { return now_ms_.load(); }
  int64_t WallMs() const override { return 1'700'000'000'000 + now_ms_.load(); }
  void AdvanceMs(int64_t ms) { now_ms_ += ms; }

 private:
  std::atomic<int64_t> now_ms_{1000};
};

}  // namespace tlt
