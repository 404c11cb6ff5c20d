#include "runtime/codec.h"

#include <gtest/gtest.h>

#include "runtime/actor.h"
#include "runtime/nested_payload.h"

namespace {

struct Sample {
  std::string text;
  int64_t reward = 0;
  std::vector<double> logprobs;
  std::optional<std::string> note;
};

}  // namespace

TLT_CODEC_FIELDS(Sample, text, reward, logprobs, note)

namespace tlt {
namespace {

template <typename T>
T RoundTrip(const T& v) {
  Payload p = EncodePayload(v);
  T out{};
  Status st = DecodePayload(p, &out);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

TEST(CodecTest, ScalarsRoundTrip) {
  EXPECT_EQ(RoundTrip<int64_t>(-123456789012345), -123456789012345);
  EXPECT_EQ(RoundTrip<int64_t>(std::numeric_limits<int64_t>::min()), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(RoundTrip<uint64_t>(std::numeric_limits<uint64_t>::max()), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(RoundTrip<int>(-7), -7);
  EXPECT_EQ(RoundTrip<bool>(true), true);
  EXPECT_DOUBLE_EQ(RoundTrip<double>(3.25), 3.25);
  EXPECT_FLOAT_EQ(RoundTrip<float>(-1.5f), -1.5f);
  EXPECT_EQ(RoundTrip<std::string>(std::string("h\0llo", 5)), std::string("h\0llo", 5));
}

TEST(CodecTest, ContainersRoundTrip) {
  std::vector<std::vector<int32_t>> nested = {{1, 2}, {}, {3}};
  EXPECT_EQ(RoundTrip(nested), nested);
  std::map<std::string, double> m = {{"a", 1.0}, {"b", -2.5}};
  EXPECT_EQ(RoundTrip(m), m);
  std::unordered_map<int, std::string> um = {{1, "x"}, {2, "y"}};
  EXPECT_EQ(RoundTrip(um), um);
  std::optional<int64_t> none, some = 5;
  EXPECT_EQ(RoundTrip(none), none);
  EXPECT_EQ(RoundTrip(some), some);
  auto t = std::make_tuple(int64_t(1), std::string("two"), 3.0);
  EXPECT_EQ(RoundTrip(t), t);
  auto pr = std::make_pair(std::string("k"), int64_t(9));
  EXPECT_EQ(RoundTrip(pr), pr);
}

TEST(CodecTest, UserStructRoundTrip) {
  Sample s{"answer", 1, {-0.5, -1.25}, std::string("ok")};
  Sample out = RoundTrip(s);
  EXPECT_EQ(out.text, s.text);
  EXPECT_EQ(out.reward, s.reward);
  EXPECT_EQ(out.logprobs, s.logprobs);
  EXPECT_EQ(out.note, s.note);
}

TEST(CodecTest, StatusRoundTrip) {
  Status s = RoundTrip(Status(ErrorCode::kNotFound, "no such file"));
  EXPECT_EQ(s.code(), ErrorCode::kNotFound);
  EXPECT_EQ(s.message(), "no such file");
}

TEST(CodecTest, LargeBytesTravelAsFramesWithoutCopy) {
  Buffer big = Buffer::Allocate(1 << 20);
  big.mutable_data()[12345] = 7;
  Payload p = EncodePayload(big);
  ASSERT_EQ(p.frames.size(), 1u);
  EXPECT_EQ(p.frames[0].data(), big.data());  // same memory: zero-copy
  EXPECT_LT(p.inline_bytes.size(), 16u);
  Buffer out;
  ASSERT_TRUE(DecodePayload(p, &out).ok());
  EXPECT_EQ(out.size(), big.size());
  EXPECT_EQ(out.data()[12345], 7);
  Buffer small = Buffer::FromString("tiny");
  Payload q = EncodePayload(small);
  EXPECT_TRUE(q.frames.empty());
  ASSERT_TRUE(DecodePayload(q, &out).ok());
  EXPECT_EQ(out.ToString(), "tiny");
}

TEST(CodecTest, TypeMismatchNamesBothTypes) {
  Payload p = EncodePayload(std::string("text"));
  int64_t v;
  Status st = DecodePayload(p, &v);
  EXPECT_EQ(st.code(), ErrorCode::kCodecMismatch);
  EXPECT_NE(st.message().find("string"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("integer"), std::string::npos) << st.message();
}

TEST(CodecTest, IntegerRangeChecked) {
  Payload p = EncodePayload(int64_t(300));
  uint8_t small;
  EXPECT_EQ(DecodePayload(p, &small).code(), ErrorCode::kCodecMismatch);
  Payload n = EncodePayload(int64_t(-1));
  uint32_t u;
  EXPECT_EQ(DecodePayload(n, &u).code(), ErrorCode::kCodecMismatch);
}

TEST(CodecTest, ArgumentCountMismatch) {
  Payload p = EncodeTuple(int64_t(1), int64_t(2));
  std::tuple<int64_t> one;
  Status st = DecodePayload(p, &one);
  EXPECT_EQ(st.code(), ErrorCode::kCodecMismatch);
  EXPECT_NE(st.message().find("expected 1 values, got 2"), std::string::npos) << st.message();
}

TEST(CodecTest, TruncatedAndGarbageBytesAreErrorsNotCrashes) {
  Payload p = EncodePayload(std::vector<std::string>{"abc", "defgh"});
  for (size_t cut = 0; cut < p.inline_bytes.size(); ++cut) {
    Payload t;
    t.inline_bytes = p.inline_bytes.substr(0, cut);
    std::vector<std::string> out;
    EXPECT_FALSE(DecodePayload(t, &out).ok()) << "cut at " << cut;
  }
  Payload garbage;
  garbage.inline_bytes = std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10);  // huge list
  std::vector<int64_t> out;
  EXPECT_EQ(DecodePayload(garbage, &out).code(), ErrorCode::kMalformed);
  Payload bad_frame;
  bad_frame.inline_bytes = std::string("\x07\x03", 2);  // frame 3 of none
  Buffer b;
  EXPECT_EQ(DecodePayload(bad_frame, &b).code(), ErrorCode::kMalformed);
}

TEST(CodecTest, StructNameAndFieldCountChecked) {
  Payload p = EncodePayload(std::make_tuple(std::string("x")));
  Sample s;
  EXPECT_EQ(DecodePayload(p, &s).code(), ErrorCode::kCodecMismatch);
}

TEST(CodecTest, NestedPayloadsKeepFrames) {
  Payload a = EncodePayload(Buffer::Allocate(8192));
  Payload b = EncodePayload(std::string("state"));
  Payload c = EncodePayload(Buffer::Allocate(5000));
  Payload packed = PackPayloads({a, b, c});
  EXPECT_EQ(packed.frames.size(), 2u);
  std::vector<Payload> parts;
  ASSERT_TRUE(UnpackPayloads(packed, &parts).ok());
  ASSERT_EQ(parts.size(), 3u);
  Buffer ba, bc;
  std::string sb;
  ASSERT_TRUE(DecodePayload(parts[0], &ba).ok());
  ASSERT_TRUE(DecodePayload(parts[1], &sb).ok());
  ASSERT_TRUE(DecodePayload(parts[2], &bc).ok());
  EXPECT_EQ(ba.size(), 8192u);
  EXPECT_EQ(sb, "state");
  EXPECT_EQ(bc.size(), 5000u);
}

}  // namespace
}  // namespace tlt

#include "runtime/capnp_value.h"
#include "runtime/protocol.capnp.h"

namespace tlt {
namespace {

TEST(CodecTest, CapnpStructsRoundTripAndCheckTheirSchema) {
  capnp::MallocMessageBuilder b;
  auto info = b.initRoot<proto::ActorInfo>();
  info.setActorId("a123");
  info.setRestarts(4);
  CapnpValue<proto::ActorInfo> value(b);
  Payload p = EncodePayload(value);
  CapnpValue<proto::ActorInfo> out;
  ASSERT_TRUE(DecodePayload(p, &out).ok());
  EXPECT_EQ(std::string(out.reader().getActorId()), "a123");
  EXPECT_EQ(out.reader().getRestarts(), 4);
  CapnpValue<proto::NodeInfo> wrong;
  EXPECT_EQ(DecodePayload(p, &wrong).code(), ErrorCode::kCodecMismatch);
}

}  // namespace
}  // namespace tlt
