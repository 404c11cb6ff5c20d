// Status and Result<T>: errors as values, for everything that crosses a process or
// actor boundary (style: LevelDB's Status, Ray's RETURN_NOT_OK).
//
// A Status is either OK or carries an ErrorCode and a message that names the problem
// and, where possible, what to do next. Result<T> holds a T or a non-OK Status.
// Both are cheap to copy when OK. Thread-compatible (no internal synchronization).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace tlt {

// One enum for the runtime domain. Values travel on the wire: append, never renumber.
enum class ErrorCode : uint8_t {
  kOk = 0,
  kInvalidArgument = 1,   // the caller passed something wrong (bad config key, bad flag)
  kNotFound = 2,          // no such actor, node, method, file
  kTimeout = 3,           // a wait ran out
  kActorDied = 4,         // the actor is DEAD (see its death cause)
  kMoved = 5,             // the actor left this worker; refresh its location
  kCodecMismatch = 6,     // argument or result bytes do not decode as the expected types
  kUnknownMethod = 7,     // the actor class has no method of that name
  kUnauthenticated = 8,   // wrong or missing cluster token
  kUnavailable = 9,       // peer not reachable, resources not available yet
  kInfeasible = 10,       // no node in the cluster can ever satisfy the request
  kActorError = 11,       // the actor method threw; message holds what()
  kInternal = 12,         // a bug in tlt
  kMalformed = 13,        // bytes that are not a valid message
  kCancelled = 14,        // the call was abandoned (shutdown)
  kIoError = 15,          // a file or socket operation failed
};

const char* ErrorCodeName(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status OK() { return Status(); }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "NotFound: no actor named 'x'"
  std::string ToString() const;
  // Prepends context: "while creating actor 'x': <message>".
  Status WithContext(const std::string& context) const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
inline Status Timeout(std::string m) { return {ErrorCode::kTimeout, std::move(m)}; }
inline Status Internal(std::string m) { return {ErrorCode::kInternal, std::move(m)}; }
inline Status Unavailable(std::string m) { return {ErrorCode::kUnavailable, std::move(m)}; }
inline Status CodecMismatch(std::string m) { return {ErrorCode::kCodecMismatch, std::move(m)}; }
inline Status IoError(std::string m) { return {ErrorCode::kIoError, std::move(m)}; }

// Holds either a value or an error. Access value() only when ok().
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T value_or(T fallback) const { return ok() ? *value_ : std::move(fallback); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace tlt

#define TLT_CONCAT_INNER(a, b) a##b
#define TLT_CONCAT(a, b) TLT_CONCAT_INNER(a, b)

// Returns the status from the enclosing function if it is not OK.
#define RETURN_NOT_OK(expr)                  \
  do {                                       \
    ::tlt::Status _st = (expr);              \
    if (!_st.ok()) return _st;               \
  } while (0)

// Declares `lhs` from a Result expression, returning its status if not OK.
#define ASSIGN_OR_RETURN(lhs, expr)                                     \
  auto TLT_CONCAT(_res_, __LINE__) = (expr);                            \
  if (!TLT_CONCAT(_res_, __LINE__).ok())                                \
    return TLT_CONCAT(_res_, __LINE__).status();                        \
  lhs = std::move(TLT_CONCAT(_res_, __LINE__)).value()

// Aborts with the message if not OK: for invariants and main() functions.
#define CHECK_OK(expr)                                                  \
  do {                                                                  \
    ::tlt::Status _st = (expr);                                         \
    CHECK(_st.ok()) << _st.ToString();                                  \
  } while (0)
