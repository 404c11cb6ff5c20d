#include "runtime/event_loop.h"

#include <glog/logging.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

namespace tlt {

EventLoop::EventLoop()
    : wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), wake_(io_) {
  PCHECK(wake_fd_ >= 0) << "eventfd";
  wake_.assign(wake_fd_);
  ArmWake();
}

EventLoop::~EventLoop() {
  for (auto& w : watched_) w->descriptor->release();  // ZeroMQ owns its fds
}

void EventLoop::ArmWake() {
  wake_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const auto& ec) {
    if (ec || stop_) return;
    DrainPosted();
    DrainSockets();
    ArmWake();
  });
}

void EventLoop::Watch(zmq::socket_t* socket, std::function<void()> on_readable,
                      std::recursive_mutex* guard) {
  auto w = std::make_shared<Watched>();
  w->guard = guard;
  w->socket = socket;
  w->on_readable = std::move(on_readable);
  w->descriptor = std::make_shared<boost::asio::posix::stream_descriptor>(io_);
  w->descriptor->assign(socket->get(zmq::sockopt::fd));
  watched_.push_back(w);
  Arm(w);
  // Messages that arrived before the watch began raise no new edge.
  io_.post([this] { DrainSockets(); });
}

void EventLoop::Arm(const std::shared_ptr<Watched>& w) {
  w->descriptor->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                            [this, w](const auto& ec) {
                              if (ec || !w->active || stop_) return;
                              DrainSockets();
                              if (w->active) Arm(w);
                            });
}

void EventLoop::Unwatch(zmq::socket_t* socket) {
  for (auto& w : watched_) {
    if (w->socket != socket) continue;
    w->active = false;
    w->descriptor->cancel();
    w->descriptor->release();
  }
  watched_.erase(std::remove_if(watched_.begin(), watched_.end(),
                                [&](const auto& w) { return w->socket == socket; }),
                 watched_.end());
}

void EventLoop::DrainSockets() {
  for (int round = 0; round < 64; ++round) {
    bool any = false;
    // Handlers may Watch or Unwatch: iterate over a snapshot.
    std::vector<std::shared_ptr<Watched>> snapshot = watched_;
    for (auto& w : snapshot) {
      if (!w->active) continue;
      std::unique_lock<std::recursive_mutex> lock;
      if (w->guard) lock = std::unique_lock<std::recursive_mutex>(*w->guard);
      if (w->socket->get(zmq::sockopt::events) & ZMQ_POLLIN) {
        w->on_readable();
        any = true;
      }
    }
    if (!any) return;
  }
}

void EventLoop::Post(std::function<void()> fn) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(posted_mutex_);
    posted_.push_back(std::move(fn));
    wake = !wake_pending_;
    wake_pending_ = true;
  }
  if (wake) {  // one write per batch: the loop takes the whole queue at once
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof one);
    (void)n;
  }
}

void EventLoop::DrainPosted() {
  uint64_t count;
  ssize_t n = read(wake_fd_, &count, sizeof count);
  (void)n;
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mutex_);
    batch.swap(posted_);
    wake_pending_ = false;
  }
  for (auto& fn : batch) fn();
}

void EventLoop::Every(std::chrono::milliseconds period, std::function<void()> fn) {
  auto timer = std::make_shared<boost::asio::steady_timer>(io_);
  SchedulePeriodic(timer, period, std::move(fn));
}

void EventLoop::SchedulePeriodic(std::shared_ptr<boost::asio::steady_timer> timer,
                                 std::chrono::milliseconds period, std::function<void()> fn) {
  timer->expires_after(period);
  timer->async_wait([this, timer, period, fn = std::move(fn)](const auto& ec) mutable {
    if (ec || stop_) return;
    fn();
    DrainSockets();
    SchedulePeriodic(timer, period, std::move(fn));
  });
}

void EventLoop::After(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto timer = std::make_shared<boost::asio::steady_timer>(io_);
  timer->expires_after(delay);
  timer->async_wait([this, timer, fn = std::move(fn)](const auto& ec) {
    if (ec || stop_) return;
    fn();
    DrainSockets();
  });
}

void EventLoop::Run() {
  DrainSockets();
  while (!stop_) {
    io_.run_one();
  }
  // Run what was posted before Stop() so promises are not dropped silently.
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mutex_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void EventLoop::Stop() {
  stop_ = true;
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof one);
  (void)n;
}

}  // namespace tlt
