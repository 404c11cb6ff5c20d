// Transport: one tlt message over ZeroMQ, and nothing about actors.
//
// A message is a Cap'n Proto Envelope frame followed by zero or more payload frames.
// Payload frames are sent zero-copy from Buffers (the Buffer's owner lives until ZeroMQ is
// done with the bytes) and received as Buffers that keep the ZeroMQ message alive.
// Bytes that are not a valid message come back as a kMalformed Status; the socket stays
// usable (all parts of the bad message are consumed). Sockets are not thread-safe: use
// each from one thread (the EventLoop's).
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <memory>
#include <string>
#include <zmq.hpp>

#include "runtime/codec.h"
#include "runtime/protocol.capnp.h"
#include "runtime/status.h"

namespace tlt {

// An envelope being built for sending, with its payload.
class OutMessage {
 public:
  // A small first segment: envelopes are a few hundred bytes, and the builder zeroes it.
  OutMessage() : builder_(128), envelope_(builder_.initRoot<proto::Envelope>()) {}
  proto::Envelope::Builder envelope() { return envelope_; }
  Payload& payload() { return payload_; }
  void set_payload(Payload p) { payload_ = std::move(p); }
  capnp::MallocMessageBuilder& builder() { return builder_; }

 private:
  capnp::MallocMessageBuilder builder_;
  proto::Envelope::Builder envelope_;
  Payload payload_;
};

// A received envelope. The reader stays valid while this object lives.
class InMessage {
 public:
  proto::Envelope::Reader envelope() const { return envelope_; }
  const Payload& payload() const { return payload_; }
  Payload& mutable_payload() { return payload_; }
  // Routing identity of the sender (ROUTER sockets only).
  const std::string& routing_id() const { return routing_id_; }

 private:
  friend Result<std::unique_ptr<InMessage>> Receive(zmq::socket_t& socket, bool routed);
  std::string routing_id_;
  zmq::message_t envelope_frame_;
  kj::Array<capnp::word> aligned_copy_;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
  proto::Envelope::Reader envelope_;
  Payload payload_;
};

// Sends `message` (and its payload frames). `routing_id` is required on ROUTER sockets
// and must be null on others. Fails with kUnavailable if ZeroMQ refuses the send
// (e.g. unknown routing id on a ROUTER with ZMQ_ROUTER_MANDATORY).
Status Send(zmq::socket_t& socket, const std::string* routing_id, OutMessage& message);

// Receives one whole message without blocking; kUnavailable when none is waiting.
// `routed`: the socket is a ROUTER and the first frame is the sender's identity.
Result<std::unique_ptr<InMessage>> Receive(zmq::socket_t& socket, bool routed);

// "tcp://127.0.0.1:7480" from "127.0.0.1:7480"; "ipc://..." and "inproc://..." pass through.
std::string ToZmqEndpoint(const std::string& address);

// The endpoint a socket actually bound (resolves port 0 / wildcard).
std::string BoundEndpoint(zmq::socket_t& socket);

// The process-wide ZeroMQ context.
zmq::context_t& ZmqContext();

}  // namespace tlt
