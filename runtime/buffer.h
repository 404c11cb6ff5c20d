// Buffer: an immutable run of bytes with shared ownership.
//
// A Buffer is how large payloads (tensors, checkpoints) move through the runtime without
// copies: the transport sends a Buffer as its own ZeroMQ frame pointing at the owner's
// memory, and a received frame becomes a Buffer that keeps the ZeroMQ message alive.
// Copying a Buffer copies a pointer, never the bytes. Thread-safe to share read-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace tlt {

class Buffer {
 public:
  Buffer() = default;

  // Copies `size` bytes.
  static Buffer Copy(const void* data, size_t size);
  // Takes the string's bytes (moved, no copy).
  static Buffer FromString(std::string bytes);
  // Points at memory that `owner` keeps alive for as long as any copy of the Buffer lives.
  static Buffer Wrap(const void* data, size_t size, std::shared_ptr<const void> owner) {
    Buffer b;
    b.owner_ = std::move(owner);
    b.data_ = static_cast<const uint8_t*>(data);
    b.size_ = size;
    return b;
  }
  // A zero-filled buffer of `size` bytes that the caller may fill through mutable_data()
  // before sharing it.
  static Buffer Allocate(size_t size);

  const uint8_t* data() const { return data_; }
  uint8_t* mutable_data() { return const_cast<uint8_t*>(data_); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }
  std::string ToString() const { return std::string(view()); }
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  std::shared_ptr<const void> owner_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

inline Buffer Buffer::Copy(const void* data, size_t size) {
  Buffer b = Allocate(size);
  if (size) std::memcpy(b.mutable_data(), data, size);
  return b;
}

inline Buffer Buffer::FromString(std::string bytes) {
  auto holder = std::make_shared<std::string>(std::move(bytes));
  return Wrap(holder->data(), holder->size(), holder);
}

inline Buffer Buffer::Allocate(size_t size) {
  std::shared_ptr<uint8_t[]> mem(new uint8_t[size ? size : 1]());
  return Wrap(mem.get(), size, std::shared_ptr<const void>(mem, mem.get()));
}

}  // namespace tlt
