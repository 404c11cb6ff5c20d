// Packing several payloads into one (a migrating actor carries its constructor arguments,
// its state and its call-order table in one message), keeping frames zero-copy.
#pragma once

#include <vector>

#include "runtime/codec.h"

namespace tlt {

inline Payload PackPayloads(const std::vector<Payload>& parts) {
  std::vector<std::string> inlines;
  std::vector<uint64_t> frame_counts;
  Payload out;
  for (const auto& p : parts) {
    inlines.push_back(p.inline_bytes);
    frame_counts.push_back(p.frames.size());
    out.frames.insert(out.frames.end(), p.frames.begin(), p.frames.end());
  }
  Encoder e(&out);
  e.BeginTuple(2);
  EncodeValue(e, inlines);
  EncodeValue(e, frame_counts);
  return out;
}

inline Status UnpackPayloads(const Payload& packed, std::vector<Payload>* parts) {
  std::vector<std::string> inlines;
  std::vector<uint64_t> frame_counts;
  Decoder d(packed);
  RETURN_NOT_OK(d.BeginTuple(2));
  RETURN_NOT_OK(DecodeValue(d, &inlines));
  RETURN_NOT_OK(DecodeValue(d, &frame_counts));
  if (inlines.size() != frame_counts.size())
    return Status(ErrorCode::kMalformed, "packed payload: part counts disagree");
  size_t next = 0;
  parts->clear();
  for (size_t i = 0; i < inlines.size(); ++i) {
    Payload p;
    p.inline_bytes = std::move(inlines[i]);
    if (frame_counts[i] > packed.frames.size() - next)
      return Status(ErrorCode::kMalformed, "packed payload: frame count exceeds frames");
    p.frames.assign(packed.frames.begin() + next, packed.frames.begin() + next + frame_counts[i]);
    next += frame_counts[i];
    parts->push_back(std::move(p));
  }
  return Status::OK();
}

}  // namespace tlt
