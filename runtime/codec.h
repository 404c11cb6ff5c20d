// Codec: turns method arguments and results into bytes and back.
//
// Every value is written with a one-byte type tag, so a decode that expects an int64 and
// finds a string fails with CodecMismatch naming both types instead of reading garbage.
// Supported out of the box: bool, all integer types (range-checked on decode), float,
// double, std::string, Buffer (large ones travel as separate transport frames, zero-copy),
// std::vector, std::map, std::unordered_map, std::optional, std::pair, std::tuple,
// Status, Cap'n Proto messages (CapnpValue<S>), and user structs declared with
// TLT_CODEC_FIELDS(Type, field1, field2, ...).
//
// Extension hook: a higher layer teaches the codec a new type by specializing
// tlt::Codec<T> with
//   static constexpr const char* kName;                     // for error messages
//   static void Encode(Encoder& e, const T& v);
//   static Status Decode(Decoder& d, T* out);
// models/ registers torch::Tensor this way (dtype, shape, data as a Buffer frame);
// runtime/ never includes LibTorch.
//
// Encoder and Decoder are single-threaded objects used for one payload.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/buffer.h"
#include "runtime/status.h"

namespace tlt {

// Encoded value: small bytes inline plus large buffers that travel as their own frames.
struct Payload {
  std::string inline_bytes;
  std::vector<Buffer> frames;
  size_t TotalBytes() const {
    size_t n = inline_bytes.size();
    for (const auto& f : frames) n += f.size();
    return n;
  }
};

enum class WireTag : uint8_t {
  kNull = 0, kBool = 1, kInt = 2, kUInt = 3, kDouble = 4, kString = 5, kBytesInline = 6,
  kBytesFrame = 7, kList = 8, kMap = 9, kStruct = 10, kTuple = 11, kExternal = 12,
  kStatus = 13,
};
const char* WireTagName(WireTag tag);

// Buffers at least this large are sent as separate frames instead of being copied inline.
constexpr size_t kFrameThresholdBytes = 4096;

class Encoder {
 public:
  explicit Encoder(Payload* out) : out_(out) {}
  void Tag(WireTag t) { out_->inline_bytes.push_back(static_cast<char>(t)); }
  void Varint(uint64_t v);
  void Raw(const void* data, size_t n) {
    out_->inline_bytes.append(static_cast<const char*>(data), n);
  }
  void Int(int64_t v) { Tag(WireTag::kInt); Varint((uint64_t(v) << 1) ^ uint64_t(v >> 63)); }
  void UInt(uint64_t v) { Tag(WireTag::kUInt); Varint(v); }
  void Double(double v) { Tag(WireTag::kDouble); Raw(&v, sizeof v); }
  void String(std::string_view s) { Tag(WireTag::kString); Varint(s.size()); Raw(s.data(), s.size()); }
  void Bytes(const Buffer& b);
  void BeginList(size_t n) { Tag(WireTag::kList); Varint(n); }
  void BeginMap(size_t n) { Tag(WireTag::kMap); Varint(n); }
  void BeginStruct(std::string_view name, size_t n_fields) {
    Tag(WireTag::kStruct); Varint(name.size()); Raw(name.data(), name.size()); Varint(n_fields);
  }
  void BeginTuple(size_t n) { Tag(WireTag::kTuple); Varint(n); }
  // For extension types: the name is checked on decode.
  void BeginExternal(std::string_view type_name) {
    Tag(WireTag::kExternal); Varint(type_name.size()); Raw(type_name.data(), type_name.size());
  }

 private:
  Payload* out_;
};

class Decoder {
 public:
  Decoder(const Payload& in) : Decoder(in.inline_bytes, in.frames) {}  // NOLINT
  Decoder(std::string_view bytes, const std::vector<Buffer>& frames)
      : data_(bytes), frames_(&frames) {}

  bool AtEnd() const { return pos_ == data_.size(); }
  // Reads the next tag and checks it; `expected_type` names the C++ type for the message.
  Status Expect(WireTag tag, const char* expected_type);
  Result<WireTag> PeekTag() const;
  Status Varint(uint64_t* v);
  Status Raw(void* out, size_t n);
  Status Int(int64_t* v);
  Status UInt(uint64_t* v);
  Status Double(double* v);
  Status String(std::string* s);
  Status Bytes(Buffer* b);
  Status BeginList(size_t* n);
  Status BeginMap(size_t* n);
  Status BeginStruct(std::string_view name, size_t n_fields);
  Status BeginTuple(size_t n);
  Status BeginExternal(std::string_view type_name);
  // Remaining-bytes guard for counts read off the wire (each element takes >= 1 byte).
  Status CheckCount(uint64_t n) const;

 private:
  std::string_view data_;
  const std::vector<Buffer>* frames_;
  size_t pos_ = 0;
};

template <typename T, typename Enable = void>
struct Codec;  // No codec for this type: specialize tlt::Codec<T> or use TLT_CODEC_FIELDS.

template <typename T>
void EncodeValue(Encoder& e, const T& v) {
  // String literals (char arrays) encode through Codec<const char*>.
  using D = std::conditional_t<std::is_array_v<T>, const std::remove_extent_t<T>*, T>;
  Codec<D>::Encode(e, v);
}
template <typename T>
Status DecodeValue(Decoder& d, T* out) { return Codec<T>::Decode(d, out); }

// ---- scalars ----
template <>
struct Codec<bool> {
  static constexpr const char* kName = "bool";
  static void Encode(Encoder& e, bool v) { e.Tag(WireTag::kBool); e.Raw(&v, 1); }
  static Status Decode(Decoder& d, bool* out) {
    RETURN_NOT_OK(d.Expect(WireTag::kBool, kName));
    uint8_t b = 0;
    RETURN_NOT_OK(d.Raw(&b, 1));
    *out = b != 0;
    return Status::OK();
  }
};

template <typename T>
struct Codec<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static constexpr const char* kName = std::is_signed_v<T> ? "signed integer" : "unsigned integer";
  static void Encode(Encoder& e, T v) {
    if constexpr (std::is_signed_v<T>) e.Int(v); else e.UInt(v);
  }
  static Status Decode(Decoder& d, T* out) {
    auto tag = d.PeekTag();
    if (!tag.ok()) return tag.status();
    if (*tag == WireTag::kInt) {
      int64_t v;
      RETURN_NOT_OK(d.Int(&v));
      if (v < int64_t(std::numeric_limits<T>::min()) ||
          (v > 0 && uint64_t(v) > uint64_t(std::numeric_limits<T>::max())))
        return CodecMismatch("integer " + std::to_string(v) + " out of range for " + kName);
      *out = static_cast<T>(v);
      return Status::OK();
    }
    uint64_t v;
    RETURN_NOT_OK(d.UInt(&v));
    if (v > uint64_t(std::numeric_limits<T>::max()))
      return CodecMismatch("integer " + std::to_string(v) + " out of range for " + kName);
    *out = static_cast<T>(v);
    return Status::OK();
  }
};

template <typename T>
struct Codec<T, std::enable_if_t<std::is_floating_point_v<T>>> {
  static constexpr const char* kName = "floating point";
  static void Encode(Encoder& e, T v) { e.Double(static_cast<double>(v)); }
  static Status Decode(Decoder& d, T* out) {
    double v;
    RETURN_NOT_OK(d.Double(&v));
    *out = static_cast<T>(v);
    return Status::OK();
  }
};

template <typename T>
struct Codec<T, std::enable_if_t<std::is_enum_v<T>>> {
  static constexpr const char* kName = "enum";
  using U = std::underlying_type_t<T>;
  static void Encode(Encoder& e, T v) { Codec<U>::Encode(e, static_cast<U>(v)); }
  static Status Decode(Decoder& d, T* out) {
    U u;
    RETURN_NOT_OK(Codec<U>::Decode(d, &u));
    *out = static_cast<T>(u);
    return Status::OK();
  }
};

template <>
struct Codec<std::string> {
  static constexpr const char* kName = "string";
  static void Encode(Encoder& e, const std::string& v) { e.String(v); }
  static Status Decode(Decoder& d, std::string* out) { return d.String(out); }
};

// String literals and C strings encode as strings (decode into std::string).
template <>
struct Codec<const char*> {
  static constexpr const char* kName = "string";
  static void Encode(Encoder& e, const char* v) { e.String(v); }
};

template <>
struct Codec<Buffer> {
  static constexpr const char* kName = "bytes";
  static void Encode(Encoder& e, const Buffer& v) { e.Bytes(v); }
  static Status Decode(Decoder& d, Buffer* out) { return d.Bytes(out); }
};

template <>
struct Codec<Status> {
  static constexpr const char* kName = "Status";
  static void Encode(Encoder& e, const Status& s) {
    e.Tag(WireTag::kStatus);
    e.Varint(static_cast<uint64_t>(s.code()));
    e.String(s.message());
  }
  static Status Decode(Decoder& d, Status* out) {
    RETURN_NOT_OK(d.Expect(WireTag::kStatus, kName));
    uint64_t code;
    std::string msg;
    RETURN_NOT_OK(d.Varint(&code));
    RETURN_NOT_OK(d.String(&msg));
    *out = Status(static_cast<ErrorCode>(code), std::move(msg));
    return Status::OK();
  }
};

// ---- containers ----
template <typename T>
struct Codec<std::vector<T>> {
  static constexpr const char* kName = "list";
  static void Encode(Encoder& e, const std::vector<T>& v) {
    e.BeginList(v.size());
    for (const auto& x : v) EncodeValue(e, static_cast<const T&>(x));
  }
  static Status Decode(Decoder& d, std::vector<T>* out) {
    size_t n;
    RETURN_NOT_OK(d.BeginList(&n));
    out->clear();
    out->reserve(n);
    for (size_t i = 0; i < n; ++i) {
      T x{};
      Status st = DecodeValue(d, &x);
      if (!st.ok()) return st.WithContext("list element " + std::to_string(i));
      out->push_back(std::move(x));
    }
    return Status::OK();
  }
};

template <typename MapT>
struct MapCodec {
  static constexpr const char* kName = "map";
  static void Encode(Encoder& e, const MapT& m) {
    e.BeginMap(m.size());
    for (const auto& [k, v] : m) { EncodeValue(e, k); EncodeValue(e, v); }
  }
  static Status Decode(Decoder& d, MapT* out) {
    size_t n;
    RETURN_NOT_OK(d.BeginMap(&n));
    out->clear();
    for (size_t i = 0; i < n; ++i) {
      typename MapT::key_type k{};
      typename MapT::mapped_type v{};
      RETURN_NOT_OK(DecodeValue(d, &k).WithContext("map key"));
      RETURN_NOT_OK(DecodeValue(d, &v).WithContext("map value"));
      out->emplace(std::move(k), std::move(v));
    }
    return Status::OK();
  }
};
template <typename K, typename V>
struct Codec<std::map<K, V>> : MapCodec<std::map<K, V>> {};
template <typename K, typename V>
struct Codec<std::unordered_map<K, V>> : MapCodec<std::unordered_map<K, V>> {};

template <typename T>
struct Codec<std::optional<T>> {
  static constexpr const char* kName = "optional";
  static void Encode(Encoder& e, const std::optional<T>& v) {
    if (v) EncodeValue(e, *v); else e.Tag(WireTag::kNull);
  }
  static Status Decode(Decoder& d, std::optional<T>* out) {
    auto tag = d.PeekTag();
    if (!tag.ok()) return tag.status();
    if (*tag == WireTag::kNull) { out->reset(); return d.Expect(WireTag::kNull, kName); }
    T x{};
    RETURN_NOT_OK(DecodeValue(d, &x));
    *out = std::move(x);
    return Status::OK();
  }
};

template <typename... Ts>
struct Codec<std::tuple<Ts...>> {
  static constexpr const char* kName = "tuple";
  static void Encode(Encoder& e, const std::tuple<Ts...>& t) {
    e.BeginTuple(sizeof...(Ts));
    std::apply([&](const auto&... x) { (EncodeValue(e, x), ...); }, t);
  }
  static Status Decode(Decoder& d, std::tuple<Ts...>* out) {
    RETURN_NOT_OK(d.BeginTuple(sizeof...(Ts)));
    return DecodeElements(d, out, std::index_sequence_for<Ts...>{});
  }
  template <size_t... I>
  static Status DecodeElements(Decoder& d, std::tuple<Ts...>* out, std::index_sequence<I...>) {
    Status st;
    // Stops at the first failure; names the 1-based position.
    ((st.ok() ? (st = DecodeValue(d, &std::get<I>(*out))
                          .WithContext("element " + std::to_string(I + 1)),
                 0)
              : 0),
     ...);
    return st;
  }
};

template <typename A, typename B>
struct Codec<std::pair<A, B>> {
  static constexpr const char* kName = "pair";
  static void Encode(Encoder& e, const std::pair<A, B>& p) {
    e.BeginTuple(2); EncodeValue(e, p.first); EncodeValue(e, p.second);
  }
  static Status Decode(Decoder& d, std::pair<A, B>* out) {
    RETURN_NOT_OK(d.BeginTuple(2));
    RETURN_NOT_OK(DecodeValue(d, &out->first));
    return DecodeValue(d, &out->second);
  }
};

// Encodes `values` as one tuple payload (the argument list of a call).
template <typename... Ts>
Payload EncodeTuple(const Ts&... values) {
  Payload p;
  Encoder e(&p);
  e.BeginTuple(sizeof...(Ts));
  (EncodeValue(e, values), ...);
  return p;
}

// Decodes a whole payload into `out`, requiring that every byte is consumed.
template <typename T>
Status DecodePayload(const Payload& p, T* out) {
  Decoder d(p);
  RETURN_NOT_OK(DecodeValue(d, out));
  if (!d.AtEnd()) return CodecMismatch("trailing bytes after a decoded " + std::string(Codec<T>::kName));
  return Status::OK();
}
template <typename T>
Payload EncodePayload(const T& v) {
  Payload p;
  Encoder e(&p);
  EncodeValue(e, v);
  return p;
}

}  // namespace tlt

// ---- user structs ----
#define TLT_CODEC_ENCODE_FIELD(field) ::tlt::EncodeValue(e, v.field);
#define TLT_CODEC_DECODE_FIELD(field) \
  if (st.ok()) st = ::tlt::DecodeValue(d, &out->field).WithContext("field '" #field "'");

#define TLT_CODEC_APPLY_1(m, a) m(a)
#define TLT_CODEC_APPLY_2(m, a, ...) m(a) TLT_CODEC_APPLY_1(m, __VA_ARGS__)
#define TLT_CODEC_APPLY_3(m, a, ...) m(a) TLT_CODEC_APPLY_2(m, __VA_ARGS__)
#define TLT_CODEC_APPLY_4(m, a, ...) m(a) TLT_CODEC_APPLY_3(m, __VA_ARGS__)
#define TLT_CODEC_APPLY_5(m, a, ...) m(a) TLT_CODEC_APPLY_4(m, __VA_ARGS__)
#define TLT_CODEC_APPLY_6(m, a, ...) m(a) TLT_CODEC_APPLY_5(m, __VA_ARGS__)
#define TLT_CODEC_APPLY_7(m, a, ...) m(a) TLT_CODEC_APPLY_6(m, __VA_ARGS__)
#define TLT_CODEC_APPLY_8(m, a, ...) m(a) TLT_CODEC_APPLY_7(m, __VA_ARGS__)
#define TLT_CODEC_APPLY_9(m, a, ...) m(a) TLT_CODEC_APPLY_8(m, __VA_ARGS__)
#define TLT_CODEC_APPLY_10(m, a, ...) m(a) TLT_CODEC_APPLY_9(m, __VA_ARGS__)
#define TLT_CODEC_APPLY_11(m, a, ...) m(a) TLT_CODEC_APPLY_10(m, __VA_ARGS__)
#define TLT_CODEC_APPLY_12(m, a, ...) m(a) TLT_CODEC_APPLY_11(m, __VA_ARGS__)
#define TLT_CODEC_NARGS(...) TLT_CODEC_NARGS_(__VA_ARGS__, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
#define TLT_CODEC_NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, N, ...) N
#define TLT_CODEC_FOR_EACH(m, ...) \
  TLT_CONCAT(TLT_CODEC_APPLY_, TLT_CODEC_NARGS(__VA_ARGS__))(m, __VA_ARGS__)

// Declares a codec for a plain struct, at namespace scope outside any namespace:
//   struct Sample { std::string text; int64_t reward; };
//   TLT_CODEC_FIELDS(Sample, text, reward)
// Up to 12 fields. Struct name and field count are checked on decode.
#define TLT_CODEC_FIELDS(Type, ...)                                                    \
  template <>                                                                          \
  struct tlt::Codec<Type> {                                                            \
    static constexpr const char* kName = #Type;                                        \
    static constexpr size_t kFields = TLT_CODEC_NARGS(__VA_ARGS__);                    \
    static void Encode(::tlt::Encoder& e, const Type& v) {                             \
      e.BeginStruct(#Type, kFields);                                                   \
      TLT_CODEC_FOR_EACH(TLT_CODEC_ENCODE_FIELD, __VA_ARGS__)                          \
    }                                                                                  \
    static ::tlt::Status Decode(::tlt::Decoder& d, Type* out) {                        \
      ::tlt::Status st = d.BeginStruct(#Type, kFields);                                \
      TLT_CODEC_FOR_EACH(TLT_CODEC_DECODE_FIELD, __VA_ARGS__)                          \
      return st;                                                                       \
    }                                                                                  \
  };
