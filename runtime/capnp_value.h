// CapnpValue<S>: a Cap'n Proto struct as an actor-call argument or result.
//
//   capnp::MallocMessageBuilder b;
//   auto info = b.initRoot<MySchema>(); info.setName("x");
//   handle.Call(&Actor::Take, tlt::CapnpValue<MySchema>(b));
//
// The message travels as its flat words in one zero-copy frame, tagged with the schema's
// type id, so a message of another schema is a CodecMismatch. reader() is valid while the
// value (or a copy of it) lives. Copies share the bytes. Thread-compatible.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstring>
#include <memory>
#include <string>

#include "runtime/codec.h"

namespace tlt {

template <typename S>
class CapnpValue {
 public:
  CapnpValue() = default;
  explicit CapnpValue(capnp::MessageBuilder& builder) {
    auto words = capnp::messageToFlatArray(builder);
    auto bytes = words.asBytes();
    buffer_ = Buffer::Copy(bytes.begin(), bytes.size());
    Open();
  }
  static Result<CapnpValue> FromBytes(Buffer bytes) {
    if (bytes.size() % sizeof(capnp::word) != 0)
      return Status(ErrorCode::kMalformed, "Cap'n Proto bytes are not whole words");
    CapnpValue v;
    // Frames may be unaligned: copy into word-aligned memory when they are.
    if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) != 0)
      bytes = Buffer::Copy(bytes.data(), bytes.size());
    v.buffer_ = std::move(bytes);
    try {
      v.Open();
      (void)v.reader();
    } catch (const kj::Exception& e) {
      return Status(ErrorCode::kMalformed, std::string("bad Cap'n Proto message: ") +
                                               e.getDescription().cStr());
    }
    return v;
  }
  bool empty() const { return reader_ == nullptr; }
  typename S::Reader reader() const { return reader_->template getRoot<S>(); }
  const Buffer& bytes() const { return buffer_; }

 private:
  void Open() {
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(buffer_.data()),
                                          buffer_.size() / sizeof(capnp::word));
    reader_ = std::make_shared<capnp::FlatArrayMessageReader>(words);
  }
  Buffer buffer_;  // Buffer::Allocate/Copy memory is new[]-aligned (16 bytes)
  std::shared_ptr<capnp::FlatArrayMessageReader> reader_;
};

template <typename S>
struct Codec<CapnpValue<S>> {
  static constexpr const char* kName = "Cap'n Proto message";
  static std::string TypeName() { return "capnp:" + std::to_string(S::_capnpPrivate::typeId); }
  static void Encode(Encoder& e, const CapnpValue<S>& v) {
    e.BeginExternal(TypeName());
    e.Bytes(v.bytes());
  }
  static Status Decode(Decoder& d, CapnpValue<S>* out) {
    RETURN_NOT_OK(d.BeginExternal(TypeName()));
    Buffer bytes;
    RETURN_NOT_OK(d.Bytes(&bytes));
    auto v = CapnpValue<S>::FromBytes(std::move(bytes));
    if (!v.ok()) return v.status();
    *out = std::move(v).value();
    return Status::OK();
  }
};

}  // namespace tlt
