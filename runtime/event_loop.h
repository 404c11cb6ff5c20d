// EventLoop: the one thread that owns a process component's sockets.
//
// A Boost.Asio io_context is the reactor: it waits (epoll) on each watched ZeroMQ socket's
// ZMQ_FD, on an eventfd that other threads signal through Post(), and on Asio timers. Because
// ZMQ_FD only signals edges, after every handler, posted batch and timer the loop re-checks
// ZMQ_EVENTS of every watched socket and runs its handler while it has messages. Every
// runtime component (controller, node agent, worker, client) runs on one EventLoop, so its
// state needs no locks. Watch/Unwatch/Every/After must be called on the loop thread or before
// Run(); Post and Stop are thread-safe. A handler must not destroy a watched socket (Unwatch,
// then destroy it from a posted task).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
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

  // Calls `on_readable` whenever `socket` has a message. The handler should drain it.
  // `guard`, if given, is held while the loop touches the socket and runs the handler, for
  // sockets that other threads also send on under the same mutex.
  void Watch(zmq::socket_t* socket, std::function<void()> on_readable,
             std::recursive_mutex* guard = nullptr);
  void Unwatch(zmq::socket_t* socket);
  // Runs `fn` on the loop thread soon. Thread-safe; wakes the loop at once.
  void Post(std::function<void()> fn);
  // Timers on the loop thread. A periodic timer runs until the loop stops.
  void Every(std::chrono::milliseconds period, std::function<void()> fn);
  void After(std::chrono::milliseconds delay, std::function<void()> fn);

  // Runs until Stop(). Call from the thread that owns the sockets.
  void Run();
  void Stop();
  bool stopped() const { return stop_; }
  boost::asio::io_context& io() { return io_; }

 private:
  struct Watched {
    zmq::socket_t* socket;
    std::function<void()> on_readable;
    std::shared_ptr<boost::asio::posix::stream_descriptor> descriptor;
    std::recursive_mutex* guard = nullptr;
    bool active = true;
  };
  void Arm(const std::shared_ptr<Watched>& w);
  void ArmWake();
  void DrainPosted();
  // Runs handlers of sockets that have messages, until none has.
  void DrainSockets();
  void SchedulePeriodic(std::shared_ptr<boost::asio::steady_timer> timer,
                        std::chrono::milliseconds period, std::function<void()> fn);

  boost::asio::io_context io_;
  std::vector<std::shared_ptr<Watched>> watched_;
  int wake_fd_ = -1;
  boost::asio::posix::stream_descriptor wake_;
  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;
  bool wake_pending_ = false;  // guarded by posted_mutex_
  std::atomic<bool> stop_{false};
};

}  // namespace tlt
