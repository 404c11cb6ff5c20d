// Helpers shared by the runtime benchmarks (runtime_bench, zmq_pingpong, caf_pingpong):
// a clock, percentiles, a bounded in-flight window, and starting this program again as a
// server process that reports what it bound on a pipe.
//
// Every benchmark program prints exactly one JSON object on stdout; the driver script
// bench/run_runtime_bench.sh merges them. Header-only; no runtime/ dependency.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace bench {

// Same settings for all three systems, so their ratios compare like with like.
constexpr int kWindow = 256;       // calls in flight for async throughput
constexpr int kPairs = 4;          // n for n:n (n callers, n callees); kWindow in all
constexpr int kRttSamples = 4000;  // sync round trips measured (after a warm-up)
constexpr double kThroughputSeconds = 2.0;
constexpr size_t kLargePayload = size_t(1) << 20;  // 1 MiB
constexpr int kLargeWindow = 8;                    // 1 MiB calls in flight
constexpr int kCreateCount = 16;                   // actors created for the creation rate

inline double NowSeconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// p in [0, 100]; sorts `v`.
inline double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = size_t(p / 100.0 * double(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Keeps at most `size` calls in flight: Acquire before sending, Release on completion
// (from any thread). Drain waits until every call has completed.
class Window {
 public:
  explicit Window(int size) : size_(size), free_(size) {}
  void Acquire() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void Release() {
    // Notifies under the lock: a Drain that returns may destroy the Window at once.
    std::lock_guard<std::mutex> lock(mutex_);
    ++free_;
    cv_.notify_all();
  }
  void Drain() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return free_ == size_; });
  }

 private:
  const int size_;
  int free_;
  std::mutex mutex_;
  std::condition_variable cv_;
};

inline std::string SelfExecutable() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  return buf;
}

// A copy of this program started with `args`; its stdout is a pipe the parent reads.
struct ServerProcess {
  pid_t pid = -1;
  int out_fd = -1;

  // Reads one line the server printed (e.g. its ports). Empty on EOF.
  std::string ReadLine() {
    std::string line;
    char c;
    while (read(out_fd, &c, 1) == 1) {
      if (c == '\n') break;
      line.push_back(c);
    }
    return line;
  }
  void Stop() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
    if (out_fd >= 0) close(out_fd);
    out_fd = -1;
  }
};

inline ServerProcess StartSelf(const std::vector<std::string>& args) {
  static const std::string exe = SelfExecutable();
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    perror("pipe");
    std::exit(1);
  }
  ServerProcess p;
  p.pid = fork();
  if (p.pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  p.out_fd = fds[0];
  return p;
}

}  // namespace bench
