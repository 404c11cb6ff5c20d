#include "tests/runtime/test_actors.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "runtime/actor.h"
#include "runtime/codec.h"

namespace tlt::testing {

int64_t Counter::Pid() const { return getpid(); }

std::string Counter::Gpus() const {
  const char* sim = std::getenv("TLT_SIMULATED_GPUS");
  return sim ? sim : "";
}

void Counter::Crash() const { kill(getpid(), SIGKILL); }

void Counter::Sleep(int64_t ms) const { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

void Counter::Grow(int64_t mb) { blob_.assign(size_t(mb) << 20, 'x'); }

Buffer Counter::SaveState() {
  // value, log, then the blob: encoded with the codec, the blob as a zero-copy frame.
  Payload p;
  Encoder e(&p);
  e.BeginTuple(3);
  EncodeValue(e, value_);
  EncodeValue(e, log_);
  e.String(std::string_view());  // placeholder keeps the layout simple to read back
  std::string header = p.inline_bytes;
  std::string out;
  uint64_t header_size = header.size();
  out.reserve(8 + header.size() + blob_.size());
  out.append(reinterpret_cast<const char*>(&header_size), 8);
  out.append(header);
  out.append(blob_);
  return Buffer::FromString(std::move(out));
}

Status Counter::LoadState(Buffer state) {
  if (state.size() < 8) return InvalidArgument("checkpoint too short");
  uint64_t header_size;
  std::memcpy(&header_size, state.data(), 8);
  if (8 + header_size > state.size()) return InvalidArgument("checkpoint header truncated");
  Payload p;
  p.inline_bytes.assign(reinterpret_cast<const char*>(state.data()) + 8, header_size);
  Decoder d(p);
  RETURN_NOT_OK(d.BeginTuple(3));
  RETURN_NOT_OK(DecodeValue(d, &value_));
  RETURN_NOT_OK(DecodeValue(d, &log_));
  std::string unused;
  RETURN_NOT_OK(d.String(&unused));
  blob_.assign(reinterpret_cast<const char*>(state.data()) + 8 + header_size,
               state.size() - 8 - header_size);
  return Status::OK();
}

TLT_ACTOR(Counter)
    .Constructor<int64_t>()
    .Method("Add", &Counter::Add)
    .Method("Get", &Counter::Get)
    .Method("Append", &Counter::Append)
    .Method("Log", &Counter::Log)
    .Method("Echo", &Counter::Echo)
    .Method("EchoBytes", &Counter::EchoBytes)
    .Method("Throw", &Counter::Throw)
    .Method("Fail", &Counter::Fail)
    .Method("Pid", &Counter::Pid)
    .Method("Gpus", &Counter::Gpus)
    .Method("Crash", &Counter::Crash)
    .Method("Sleep", &Counter::Sleep)
    .Method("Grow", &Counter::Grow)
    .Method("StateBytes", &Counter::StateBytes)
    .Checkpoint(&Counter::SaveState, &Counter::LoadState);

TLT_ACTOR(Broken).Constructor<std::string>().Method("Get", &Broken::Get);

}  // namespace tlt::testing
