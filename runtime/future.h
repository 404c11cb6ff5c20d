// Future<T> / Promise<T>: the result of an actor call, delivered once.
//
// A Future is a shared, copyable view of one result (a T or an error Status). Get() blocks
// up to a timeout; Then() registers a callback that runs exactly once with the result, on
// the thread that sets it (the client's I/O thread) or at once if it is already set, so
// callbacks must be short and must not block. WaitAll / WaitAny wait on several futures.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "runtime/status.h"

namespace tlt {

// The value of a call whose method returns void or Status.
struct Void {};

using Millis = std::chrono::milliseconds;
constexpr Millis kWaitForever = Millis(-1);

namespace internal {
template <typename T>
struct FutureState {
  std::mutex mutex;
  std::condition_variable ready_cv;
  std::optional<Result<T>> result;
  std::vector<std::function<void(const Result<T>&)>> callbacks;
};
}  // namespace internal

template <typename T>
class Future {
 public:
  Future() = default;
  explicit Future(std::shared_ptr<internal::FutureState<T>> state) : state_(std::move(state)) {}

  bool valid() const { return state_ != nullptr; }
  bool Ready() const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->result.has_value();
  }
  // Waits up to `timeout` (kWaitForever: no limit). A timeout returns kTimeout; the call
  // itself goes on and a later Get() can still see its result.
  Result<T> Get(Millis timeout = kWaitForever) const {
    std::unique_lock<std::mutex> lock(state_->mutex);
    auto ready = [&] { return state_->result.has_value(); };
    if (timeout.count() < 0) {
      state_->ready_cv.wait(lock, ready);
    } else if (!state_->ready_cv.wait_for(lock, timeout, ready)) {
      return Status(ErrorCode::kTimeout,
                    "no result within " + std::to_string(timeout.count()) + " ms");
    }
    return *state_->result;
  }
  // Runs `fn(const Result<T>&)` once the result is set.
  void Then(std::function<void(const Result<T>&)> fn) const {
    std::unique_lock<std::mutex> lock(state_->mutex);
    if (state_->result.has_value()) {
      lock.unlock();
      fn(*state_->result);
      return;
    }
    state_->callbacks.push_back(std::move(fn));
  }

 private:
  std::shared_ptr<internal::FutureState<T>> state_;
};

template <typename T>
class Promise {
 public:
  Promise() : state_(std::make_shared<internal::FutureState<T>>()) {}
  Future<T> GetFuture() const { return Future<T>(state_); }
  // Sets the result; later calls are ignored (the first result wins).
  void Set(Result<T> result) const {
    std::vector<std::function<void(const Result<T>&)>> callbacks;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      if (state_->result.has_value()) return;
      state_->result.emplace(std::move(result));
      callbacks.swap(state_->callbacks);
    }
    state_->ready_cv.notify_all();
    for (auto& cb : callbacks) cb(*state_->result);
  }

 private:
  std::shared_ptr<internal::FutureState<T>> state_;
};

// Waits until every future is ready or the deadline passes (then kTimeout).
template <typename T>
Status WaitAll(const std::vector<Future<T>>& futures, Millis timeout = kWaitForever) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const auto& f : futures) {
    Millis left = timeout;
    if (timeout.count() >= 0) {
      left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) left = Millis(0);
    }
    auto r = f.Get(left);
    if (!r.ok() && r.status().code() == ErrorCode::kTimeout && !f.Ready()) return r.status();
  }
  return Status::OK();
}

// Returns the index of a future that is ready, waiting up to `timeout`.
template <typename T>
Result<size_t> WaitAny(const std::vector<Future<T>>& futures, Millis timeout = kWaitForever) {
  if (futures.empty()) return InvalidArgument("WaitAny on no futures");
  struct Shared {
    std::mutex mutex;
    std::condition_variable cv;
    std::optional<size_t> first;
  };
  auto shared = std::make_shared<Shared>();
  for (size_t i = 0; i < futures.size(); ++i) {
    futures[i].Then([shared, i](const Result<T>&) {
      std::lock_guard<std::mutex> lock(shared->mutex);
      if (!shared->first) shared->first = i;
      shared->cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(shared->mutex);
  auto ready = [&] { return shared->first.has_value(); };
  if (timeout.count() < 0) {
    shared->cv.wait(lock, ready);
  } else if (!shared->cv.wait_for(lock, timeout, ready)) {
    return Status(ErrorCode::kTimeout, "no future ready within " + std::to_string(timeout.count()) + " ms");
  }
  return *shared->first;
}

}  // namespace tlt
