#include "runtime/event_loop.h"

#include <glog/logging.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

namespace tlt {

EventLoop::EventLoop() {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  PCHECK(wake_fd_ >= 0) << "eventfd";
}

EventLoop::~EventLoop() { close(wake_fd_); }

void EventLoop::Watch(zmq::socket_t* socket, std::function<void()> on_readable) {
  watched_.push_back({socket, std::move(on_readable)});
}

void EventLoop::Unwatch(zmq::socket_t* socket) {
  watched_.erase(std::remove_if(watched_.begin(), watched_.end(),
                                [&](const Watched& w) { return w.socket == socket; }),
                 watched_.end());
}

void EventLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(posted_mutex_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof one);
  (void)n;
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
    SchedulePeriodic(timer, period, std::move(fn));
  });
}

void EventLoop::After(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto timer = std::make_shared<boost::asio::steady_timer>(io_);
  timer->expires_after(delay);
  timer->async_wait([timer, fn = std::move(fn)](const auto& ec) {
    if (!ec) fn();
  });
}

void EventLoop::DrainPosted() {
  uint64_t count;
  ssize_t n = read(wake_fd_, &count, sizeof count);
  (void)n;
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mutex_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void EventLoop::RunOnce(std::chrono::milliseconds timeout) {
  std::vector<zmq::pollitem_t> items;
  items.reserve(watched_.size() + 1);
  items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
  for (auto& w : watched_) items.push_back({w.socket->handle(), 0, ZMQ_POLLIN, 0});
  // Handlers may Watch/Unwatch: snapshot the handlers that correspond to the poll items.
  std::vector<Watched> snapshot = watched_;
  try {
    zmq::poll(items.data(), items.size(), timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) LOG(ERROR) << "zmq poll: " << e.what();
  }
  if (items[0].revents & ZMQ_POLLIN) DrainPosted();
  for (size_t i = 1; i < items.size(); ++i) {
    if (items[i].revents & ZMQ_POLLIN) snapshot[i - 1].on_readable();
  }
  io_.restart();
  io_.poll();
}

void EventLoop::Run() {
  while (!stop_) RunOnce(std::chrono::milliseconds(5));
  // Run what was posted before Stop() so promises are not dropped silently.
  DrainPosted();
}

void EventLoop::Stop() {
  stop_ = true;
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof one);
  (void)n;
}

}  // namespace tlt
