#include "runtime/transport.h"

#include <glog/logging.h>

#include <cstring>

namespace tlt {

zmq::context_t& ZmqContext() {
  static auto* context = new zmq::context_t(1);  // never destroyed: outlives all sockets
  return *context;
}

std::string ToZmqEndpoint(const std::string& address) {
  if (address.find("://") != std::string::npos) return address;
  return "tcp://" + address;
}

std::string BoundEndpoint(zmq::socket_t& socket) {
  return socket.get(zmq::sockopt::last_endpoint);
}

namespace {

void FreeBufferOwner(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const void>*>(hint);
}

}  // namespace

Status Send(zmq::socket_t& socket, const std::string* routing_id, OutMessage& message) {
  Payload& payload = message.payload();
  auto env = message.envelope();
  env.setPayload(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(payload.inline_bytes.data()),
                              payload.inline_bytes.size()));
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message.builder());
  auto bytes = words.asBytes();
  try {
    const bool has_frames = !payload.frames.empty();
    if (routing_id) {
      socket.send(zmq::buffer(*routing_id), zmq::send_flags::sndmore);
    }
    zmq::message_t head(bytes.begin(), bytes.size());
    socket.send(head, has_frames ? zmq::send_flags::sndmore : zmq::send_flags::none);
    for (size_t i = 0; i < payload.frames.size(); ++i) {
      const Buffer& b = payload.frames[i];
      auto* owner = new std::shared_ptr<const void>(b.owner());
      zmq::message_t frame(const_cast<uint8_t*>(b.data()), b.size(), FreeBufferOwner, owner);
      socket.send(frame, i + 1 < payload.frames.size() ? zmq::send_flags::sndmore
                                                       : zmq::send_flags::none);
    }
  } catch (const zmq::error_t& e) {
    return Unavailable(std::string("send failed: ") + e.what());
  }
  return Status::OK();
}

Result<std::unique_ptr<InMessage>> Receive(zmq::socket_t& socket, bool routed) {
  std::vector<zmq::message_t> parts;
  parts.reserve(4);
  try {
    zmq::message_t first;
    if (!socket.recv(first, zmq::recv_flags::dontwait)) return Unavailable("no message waiting");
    parts.push_back(std::move(first));
    while (parts.back().more()) {
      zmq::message_t next;
      (void)socket.recv(next, zmq::recv_flags::none);
      parts.push_back(std::move(next));
    }
  } catch (const zmq::error_t& e) {
    return Unavailable(std::string("receive failed: ") + e.what());
  }
  auto msg = std::make_unique<InMessage>();
  size_t i = 0;
  if (routed) {
    msg->routing_id_ = parts[0].to_string();
    i = 1;
  }
  if (i >= parts.size()) return Status(ErrorCode::kMalformed, "message has no envelope frame");
  msg->envelope_frame_ = std::move(parts[i++]);
  const size_t size = msg->envelope_frame_.size();
  if (size == 0 || size % sizeof(capnp::word) != 0)
    return Status(ErrorCode::kMalformed,
                  "envelope of " + std::to_string(size) + " bytes is not whole Cap'n Proto words");
  kj::ArrayPtr<const capnp::word> words;
  if (reinterpret_cast<uintptr_t>(msg->envelope_frame_.data()) % alignof(capnp::word) == 0) {
    words = kj::ArrayPtr<const capnp::word>(
        static_cast<const capnp::word*>(msg->envelope_frame_.data()), size / sizeof(capnp::word));
  } else {
    msg->aligned_copy_ = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
    std::memcpy(msg->aligned_copy_.begin(), msg->envelope_frame_.data(), size);
    words = msg->aligned_copy_.asPtr();
  }
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = uint64_t(1) << 32;
    msg->reader_ = std::make_unique<capnp::FlatArrayMessageReader>(words, options);
    msg->envelope_ = msg->reader_->getRoot<proto::Envelope>();
    auto data = msg->envelope_.getPayload();
    msg->payload_.inline_bytes.assign(reinterpret_cast<const char*>(data.begin()), data.size());
    (void)msg->envelope_.getBody().which();  // touches the union tag: validates the struct pointer
  } catch (const kj::Exception& e) {
    return Status(ErrorCode::kMalformed,
                  std::string("envelope is not a valid Cap'n Proto message: ") +
                      e.getDescription().cStr());
  }
  for (; i < parts.size(); ++i) {
    auto holder = std::make_shared<zmq::message_t>(std::move(parts[i]));
    msg->payload_.frames.push_back(Buffer::Wrap(holder->data(), holder->size(), holder));
  }
  return msg;
}

}  // namespace tlt
