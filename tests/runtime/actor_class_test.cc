// Actor classes without any process: construction, invocation, errors, checkpoints.
#include <gtest/gtest.h>

#include "runtime/actor.h"
#include "runtime/actor_info.h"
#include "tests/runtime/test_actors.h"

namespace tlt {
namespace {

using testing::Counter;

const ActorClassBase& CounterClass() { return *ActorRegistry::Get().Find("Counter"); }

TEST(ActorClassTest, ConstructAndInvoke) {
  auto instance = CounterClass().Construct(EncodeTuple(int64_t(10)));
  ASSERT_TRUE(instance.ok()) << instance.status().ToString();
  auto r = (*instance)->Invoke("Add", EncodeTuple(int64_t(5)));
  ASSERT_TRUE(r.ok());
  int64_t v = 0;
  ASSERT_TRUE(DecodePayload(*r, &v).ok());
  EXPECT_EQ(v, 15);
}

TEST(ActorClassTest, ErrorsAreValues) {
  auto instance = CounterClass().Construct(EncodeTuple(int64_t(0)));
  ASSERT_TRUE(instance.ok());
  auto& a = **instance;
  auto thrown = a.Invoke("Throw", EncodeTuple(std::string("boom")));
  EXPECT_EQ(thrown.status().code(), ErrorCode::kActorError);
  EXPECT_NE(thrown.status().message().find("boom"), std::string::npos);
  auto failed = a.Invoke("Fail", EncodeTuple(std::string("bad input")));
  EXPECT_EQ(failed.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(a.Invoke("Nope", EncodeTuple()).status().code(), ErrorCode::kUnknownMethod);
  EXPECT_EQ(a.Invoke("Add", EncodeTuple(std::string("x"))).status().code(), ErrorCode::kCodecMismatch);
  EXPECT_EQ(a.Invoke("Add", EncodeTuple()).status().code(), ErrorCode::kCodecMismatch);
  // Still usable after every error.
  auto ok = a.Invoke("Add", EncodeTuple(int64_t(2)));
  ASSERT_TRUE(ok.ok());
}

TEST(ActorClassTest, ConstructorErrors) {
  EXPECT_EQ(CounterClass().Construct(EncodeTuple(std::string("x"))).status().code(),
            ErrorCode::kCodecMismatch);
  auto broken = ActorRegistry::Get().Find("Broken")->Construct(EncodeTuple(std::string("no gpu")));
  EXPECT_EQ(broken.status().code(), ErrorCode::kActorError);
  EXPECT_NE(broken.status().message().find("no gpu"), std::string::npos);
}

TEST(ActorClassTest, CheckpointRestoresState) {
  auto a = CounterClass().Construct(EncodeTuple(int64_t(1)));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->Invoke("Add", EncodeTuple(int64_t(41))).ok());
  ASSERT_TRUE((*a)->Invoke("Append", EncodeTuple(std::string("c"), int64_t(1))).ok());
  ASSERT_TRUE((*a)->Invoke("Grow", EncodeTuple(int64_t(1))).ok());
  auto state = (*a)->SaveState();
  ASSERT_TRUE(state.ok());
  auto b = CounterClass().Construct(EncodeTuple(int64_t(0)));
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->LoadState(*state).ok());
  int64_t v = 0, bytes = 0;
  ASSERT_TRUE(DecodePayload(*(*b)->Invoke("Get", EncodeTuple()), &v).ok());
  ASSERT_TRUE(DecodePayload(*(*b)->Invoke("StateBytes", EncodeTuple()), &bytes).ok());
  EXPECT_EQ(v, 42);
  EXPECT_EQ(bytes, 1 << 20);
}

TEST(ActorStateTest, Transitions) {
  using S = ActorState;
  EXPECT_TRUE(IsValidTransition(S::kPendingCreation, S::kAlive));
  EXPECT_TRUE(IsValidTransition(S::kAlive, S::kMigrating));
  EXPECT_TRUE(IsValidTransition(S::kMigrating, S::kAlive));
  EXPECT_TRUE(IsValidTransition(S::kAlive, S::kRestarting));
  EXPECT_TRUE(IsValidTransition(S::kRestarting, S::kDead));
  EXPECT_FALSE(IsValidTransition(S::kDead, S::kAlive));
  EXPECT_FALSE(IsValidTransition(S::kPendingCreation, S::kMigrating));
  EXPECT_FALSE(IsValidTransition(S::kRestarting, S::kMigrating));
  EXPECT_EQ(*ParseActorState("alive"), S::kAlive);
  EXPECT_FALSE(ParseActorState("zombie").ok());
}

}  // namespace
}  // namespace tlt
