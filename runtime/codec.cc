#include "runtime/codec.h"

namespace tlt {

const char* WireTagName(WireTag tag) {
  switch (tag) {
    case WireTag::kNull: return "null";
    case WireTag::kBool: return "bool";
    case WireTag::kInt: return "signed integer";
    case WireTag::kUInt: return "unsigned integer";
    case WireTag::kDouble: return "floating point";
    case WireTag::kString: return "string";
    case WireTag::kBytesInline: return "bytes";
    case WireTag::kBytesFrame: return "bytes";
    case WireTag::kList: return "list";
    case WireTag::kMap: return "map";
    case WireTag::kStruct: return "struct";
    case WireTag::kTuple: return "tuple";
    case WireTag::kExternal: return "external type";
    case WireTag::kStatus: return "Status";
  }
  return "unknown tag";
}

void Encoder::Varint(uint64_t v) {
  while (v >= 0x80) {
    out_->inline_bytes.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out_->inline_bytes.push_back(static_cast<char>(v));
}

void Encoder::Bytes(const Buffer& b) {
  if (b.size() >= kFrameThresholdBytes) {
    Tag(WireTag::kBytesFrame);
    Varint(out_->frames.size());
    out_->frames.push_back(b);
  } else {
    Tag(WireTag::kBytesInline);
    Varint(b.size());
    Raw(b.data(), b.size());
  }
}

Result<WireTag> Decoder::PeekTag() const {
  if (pos_ >= data_.size()) return CodecMismatch("value expected, payload ended");
  uint8_t t = static_cast<uint8_t>(data_[pos_]);
  if (t > static_cast<uint8_t>(WireTag::kStatus))
    return Status(ErrorCode::kMalformed, "unknown wire tag " + std::to_string(t));
  return static_cast<WireTag>(t);
}

Status Decoder::Expect(WireTag tag, const char* expected_type) {
  auto got = PeekTag();
  if (!got.ok()) return got.status().WithContext(std::string("reading ") + expected_type);
  if (*got != tag)
    return CodecMismatch(std::string("expected ") + expected_type + ", got " + WireTagName(*got));
  ++pos_;
  return Status::OK();
}

Status Decoder::Varint(uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= data_.size()) return Status(ErrorCode::kMalformed, "truncated varint");
    uint8_t byte = static_cast<uint8_t>(data_[pos_++]);
    result |= uint64_t(byte & 0x7f) << shift;
    if (!(byte & 0x80)) { *v = result; return Status::OK(); }
  }
  return Status(ErrorCode::kMalformed, "varint longer than 10 bytes");
}

Status Decoder::Raw(void* out, size_t n) {
  if (data_.size() - pos_ < n)
    return Status(ErrorCode::kMalformed, "payload truncated: need " + std::to_string(n) +
                                             " bytes, have " + std::to_string(data_.size() - pos_));
  std::memcpy(out, data_.data() + pos_, n);
  pos_ += n;
  return Status::OK();
}

Status Decoder::CheckCount(uint64_t n) const {
  if (n > data_.size() - pos_)
    return Status(ErrorCode::kMalformed, "count " + std::to_string(n) + " exceeds payload size");
  return Status::OK();
}

Status Decoder::Int(int64_t* v) {
  RETURN_NOT_OK(Expect(WireTag::kInt, "signed integer"));
  uint64_t z;
  RETURN_NOT_OK(Varint(&z));
  *v = static_cast<int64_t>((z >> 1) ^ (~(z & 1) + 1));
  return Status::OK();
}

Status Decoder::UInt(uint64_t* v) {
  RETURN_NOT_OK(Expect(WireTag::kUInt, "unsigned integer"));
  return Varint(v);
}

Status Decoder::Double(double* v) {
  auto tag = PeekTag();
  if (!tag.ok()) return tag.status();
  if (*tag == WireTag::kInt || *tag == WireTag::kUInt) {  // integers widen to floating point
    if (*tag == WireTag::kInt) { int64_t i; RETURN_NOT_OK(Int(&i)); *v = double(i); }
    else { uint64_t u; RETURN_NOT_OK(UInt(&u)); *v = double(u); }
    return Status::OK();
  }
  RETURN_NOT_OK(Expect(WireTag::kDouble, "floating point"));
  return Raw(v, sizeof *v);
}

Status Decoder::String(std::string* s) {
  RETURN_NOT_OK(Expect(WireTag::kString, "string"));
  uint64_t n;
  RETURN_NOT_OK(Varint(&n));
  if (n > data_.size() - pos_) return Status(ErrorCode::kMalformed, "string length exceeds payload");
  s->assign(data_.data() + pos_, n);
  pos_ += n;
  return Status::OK();
}

Status Decoder::Bytes(Buffer* b) {
  auto tag = PeekTag();
  if (!tag.ok()) return tag.status();
  if (*tag == WireTag::kBytesFrame) {
    ++pos_;
    uint64_t index;
    RETURN_NOT_OK(Varint(&index));
    if (index >= frames_->size())
      return Status(ErrorCode::kMalformed, "bytes refer to frame " + std::to_string(index) +
                                               " but the message has " +
                                               std::to_string(frames_->size()));
    *b = (*frames_)[index];
    return Status::OK();
  }
  RETURN_NOT_OK(Expect(WireTag::kBytesInline, "bytes"));
  uint64_t n;
  RETURN_NOT_OK(Varint(&n));
  if (n > data_.size() - pos_) return Status(ErrorCode::kMalformed, "bytes length exceeds payload");
  *b = Buffer::Copy(data_.data() + pos_, n);
  pos_ += n;
  return Status::OK();
}

Status Decoder::BeginList(size_t* n) {
  RETURN_NOT_OK(Expect(WireTag::kList, "list"));
  uint64_t count;
  RETURN_NOT_OK(Varint(&count));
  RETURN_NOT_OK(CheckCount(count));
  *n = count;
  return Status::OK();
}

Status Decoder::BeginMap(size_t* n) {
  RETURN_NOT_OK(Expect(WireTag::kMap, "map"));
  uint64_t count;
  RETURN_NOT_OK(Varint(&count));
  RETURN_NOT_OK(CheckCount(count));
  *n = count;
  return Status::OK();
}

Status Decoder::BeginStruct(std::string_view name, size_t n_fields) {
  RETURN_NOT_OK(Expect(WireTag::kStruct, std::string(name).c_str()));
  uint64_t len;
  RETURN_NOT_OK(Varint(&len));
  if (len > data_.size() - pos_) return Status(ErrorCode::kMalformed, "struct name exceeds payload");
  std::string_view got = data_.substr(pos_, len);
  pos_ += len;
  if (got != name)
    return CodecMismatch("expected struct " + std::string(name) + ", got struct " + std::string(got));
  uint64_t fields;
  RETURN_NOT_OK(Varint(&fields));
  if (fields != n_fields)
    return CodecMismatch("struct " + std::string(name) + " has " + std::to_string(n_fields) +
                         " fields here but " + std::to_string(fields) + " on the wire");
  return Status::OK();
}

Status Decoder::BeginTuple(size_t n) {
  RETURN_NOT_OK(Expect(WireTag::kTuple, "argument tuple"));
  uint64_t count;
  RETURN_NOT_OK(Varint(&count));
  if (count != n)
    return CodecMismatch("expected " + std::to_string(n) + " values, got " + std::to_string(count));
  return Status::OK();
}

Status Decoder::BeginExternal(std::string_view type_name) {
  RETURN_NOT_OK(Expect(WireTag::kExternal, std::string(type_name).c_str()));
  uint64_t len;
  RETURN_NOT_OK(Varint(&len));
  if (len > data_.size() - pos_) return Status(ErrorCode::kMalformed, "type name exceeds payload");
  std::string_view got = data_.substr(pos_, len);
  pos_ += len;
  if (got != type_name)
    return CodecMismatch("expected " + std::string(type_name) + ", got " + std::string(got));
  return Status::OK();
}

}  // namespace tlt
