// EventLoop: the one thread that owns a process component's sockets.
//
// It waits on ZeroMQ sockets (zmq_poll) and an eventfd, runs the handler of each readable
// socket, runs functions posted from other threads, and drives a Boost.Asio io_context for
// timers. Every runtime component (controller, node agent, worker, client) runs on one
// EventLoop, so its state needs no locks. Watch/Every/After must be called on the loop
// thread or before Run(); Post and Stop are thread-safe.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>
#include <zmq.hpp>

namespace tlt {

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Calls `on_readable` whenever `socket` has a message (level-triggered).
  void Watch(zmq::socket_t* socket, std::function<void()> on_readable);
  void Unwatch(zmq::socket_t* socket);
  // Runs `fn` on the loop thread soon. Thread-safe; wakes the loop at once.
  void Post(std::function<void()> fn);
  // Timers on the loop thread. A periodic timer runs until the loop stops.
  void Every(std::chrono::milliseconds period, std::function<void()> fn);
  void After(std::chrono::milliseconds delay, std::function<void()> fn);

  // Runs until Stop(). Call from the thread that owns the sockets.
  void Run();
  // Runs one iteration, waiting at most `timeout` (for tests that step the loop).
  void RunOnce(std::chrono::milliseconds timeout);
  void Stop();
  bool stopped() const { return stop_; }
  boost::asio::io_context& io() { return io_; }

 private:
  void DrainPosted();
  void SchedulePeriodic(std::shared_ptr<boost::asio::steady_timer> timer,
                        std::chrono::milliseconds period, std::function<void()> fn);

  struct Watched {
    zmq::socket_t* socket;
    std::function<void()> on_readable;
  };
  std::vector<Watched> watched_;
  boost::asio::io_context io_;
  int wake_fd_ = -1;
  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> stop_{false};
};

}  // namespace tlt
