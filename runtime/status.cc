#include "runtime/status.h"

namespace tlt {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "OK";
    case ErrorCode::kInvalidArgument: return "InvalidArgument";
    case ErrorCode::kNotFound: return "NotFound";
    case ErrorCode::kTimeout: return "Timeout";
    case ErrorCode::kActorDied: return "ActorDied";
    case ErrorCode::kMoved: return "Moved";
    case ErrorCode::kCodecMismatch: return "CodecMismatch";
    case ErrorCode::kUnknownMethod: return "UnknownMethod";
    case ErrorCode::kUnauthenticated: return "Unauthenticated";
    case ErrorCode::kUnavailable: return "Unavailable";
    case ErrorCode::kInfeasible: return "Infeasible";
    case ErrorCode::kActorError: return "ActorError";
    case ErrorCode::kInternal: return "Internal";
    case ErrorCode::kMalformed: return "Malformed";
    case ErrorCode::kCancelled: return "Cancelled";
    case ErrorCode::kIoError: return "IoError";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(ErrorCodeName(code_)) + ": " + message_;
}

Status Status::WithContext(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_);
}

}  // namespace tlt
