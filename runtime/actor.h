// Actor classes: how a plain C++ class becomes an actor that workers can host.
//
// Register a class once, at namespace scope in the program that creates it (the same
// program runs as the worker, so the registration exists on both sides):
//
//   class Counter {
//    public:
//     explicit Counter(int64_t start) : value_(start) {}
//     int64_t Add(int64_t x) { return value_ += x; }
//     Buffer SaveState() { ... }              // optional: makes the actor movable
//     Status LoadState(Buffer state) { ... }
//   };
//   TLT_ACTOR(Counter)
//       .Constructor<int64_t>()
//       .Method("Add", &Counter::Add)
//       .Checkpoint(&Counter::SaveState, &Counter::LoadState);
//
// Methods may return void, Status, Result<X> or any codec type X. An exception thrown by
// a method (std::exception, including LibTorch's c10::Error) comes back to the caller as
// a kActorError Status; the worker keeps serving. Registration happens during static
// initialization; lookups afterwards are read-only and thread-safe.
#pragma once

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime/codec.h"
#include "runtime/future.h"
#include "runtime/status.h"

namespace tlt {

template <>
struct Codec<Void> {
  static constexpr const char* kName = "void";
  static void Encode(Encoder& e, const Void&) { e.Tag(WireTag::kNull); }
  static Status Decode(Decoder& d, Void*) { return d.Expect(WireTag::kNull, kName); }
};

// What a call to a method returning R yields to the caller.
template <typename R> struct CallValue { using type = R; };
template <> struct CallValue<void> { using type = Void; };
template <> struct CallValue<Status> { using type = Void; };
template <typename X> struct CallValue<Result<X>> { using type = X; };
template <typename R> using CallValueT = typename CallValue<std::decay_t<R>>::type;

// One live actor object inside a worker, type-erased.
class ActorInstance {
 public:
  virtual ~ActorInstance() = default;
  // Decodes `args`, runs the method, encodes its result. Never throws.
  virtual Result<Payload> Invoke(const std::string& method, const Payload& args) = 0;
  virtual bool checkpointable() const = 0;
  virtual Result<Payload> SaveState() = 0;
  virtual Status LoadState(const Payload& state) = 0;
};

class ActorClassBase {
 public:
  explicit ActorClassBase(std::string name) : name_(std::move(name)) {}
  virtual ~ActorClassBase() = default;
  const std::string& name() const { return name_; }
  virtual bool checkpointable() const = 0;
  virtual Result<std::unique_ptr<ActorInstance>> Construct(const Payload& args) const = 0;
  std::vector<std::string> MethodNames() const;

 protected:
  using Invoker = std::function<Result<Payload>(void* self, const Payload& args)>;
  struct MethodEntry {
    std::string name;
    std::string pointer_bytes;  // the member function pointer, for handle lookups
    Invoker invoke;
  };
  std::string name_;
  std::vector<MethodEntry> methods_;
};

// Name -> class, filled during static initialization.
class ActorRegistry {
 public:
  static ActorRegistry& Get();
  void Add(ActorClassBase* cls);
  const ActorClassBase* Find(const std::string& name) const;
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, ActorClassBase*> classes_;
};

namespace internal {
// Runs `fn`, turning exceptions into a kActorError naming `what_ran`.
Result<Payload> RunGuarded(const std::string& what_ran, const std::function<Result<Payload>()>& fn);

template <typename R> struct IsResult : std::false_type {};
template <typename X> struct IsResult<Result<X>> : std::true_type {};

template <typename R>
Result<Payload> EncodeReturn(R&& r) {
  using D = std::decay_t<R>;
  if constexpr (std::is_same_v<D, Status>) {
    if (!r.ok()) return r;
    return EncodePayload(Void{});
  } else if constexpr (IsResult<D>::value) {
    if (!r.ok()) return r.status();
    return EncodePayload(r.value());
  } else {
    return EncodePayload(static_cast<const D&>(r));
  }
}

template <typename M>
std::string PointerBytes(M m) {
  std::string bytes(sizeof(M), '\0');
  std::memcpy(bytes.data(), &m, sizeof(M));
  return bytes;
}
}  // namespace internal

template <typename T>
class ActorClass : public ActorClassBase {
 public:
  explicit ActorClass(std::string name) : ActorClassBase(std::move(name)) {}

  // Declares the constructor that Create<T>(options, args...) calls.
  template <typename... Args>
  ActorClass& Constructor() {
    construct_ = [](const Payload& args) -> Result<std::unique_ptr<T>> {
      std::tuple<std::decay_t<Args>...> values;
      Status st = DecodePayload(args, &values);
      if (!st.ok()) return st.WithContext("constructor arguments");
      return std::apply([](auto&... a) { return std::make_unique<T>(std::move(a)...); }, values);
    };
    return *this;
  }

  template <typename R, typename... Args>
  ActorClass& Method(std::string name, R (T::*method)(Args...)) {
    return AddMethod<R, Args...>(std::move(name), method);
  }
  template <typename R, typename... Args>
  ActorClass& Method(std::string name, R (T::*method)(Args...) const) {
    return AddMethod<R, Args...>(std::move(name), method);
  }

  // Makes the actor movable: `save` returns its state as any codec type S; `load`
  // restores it into a freshly constructed object (same constructor arguments).
  template <typename S, typename L>
  ActorClass& Checkpoint(S (T::*save)(), L (T::*load)(S)) {
    save_ = [save](T* self) -> Result<Payload> { return EncodePayload((self->*save)()); };
    load_ = [load](T* self, const Payload& p) -> Status {
      std::decay_t<S> state;
      RETURN_NOT_OK(DecodePayload(p, &state).WithContext("checkpoint"));
      if constexpr (std::is_same_v<L, Status>) return (self->*load)(std::move(state));
      else { (self->*load)(std::move(state)); return Status::OK(); }
    };
    return *this;
  }

  bool checkpointable() const override { return save_ != nullptr; }

  // The registered name of a member function pointer (for typed handles).
  template <typename M>
  Result<std::string> NameOf(M method) const {
    std::string bytes = internal::PointerBytes(method);
    for (const auto& m : methods_)
      if (m.pointer_bytes == bytes) return m.name;
    return Status(ErrorCode::kUnknownMethod,
                  "method not registered for actor class '" + name_ +
                      "': add .Method(\"Name\", &" + name_ + "::Name) to its TLT_ACTOR");
  }

  Result<std::unique_ptr<ActorInstance>> Construct(const Payload& args) const override;

 private:
  template <typename R, typename... Args, typename M>
  ActorClass& AddMethod(std::string name, M method) {
    std::string method_name = name;
    Invoker invoke = [method, method_name](void* self, const Payload& payload) -> Result<Payload> {
      std::tuple<std::decay_t<Args>...> values;
      Status st = DecodePayload(payload, &values);
      if (!st.ok()) return st.WithContext("arguments of '" + method_name + "'");
      T* obj = static_cast<T*>(self);
      if constexpr (std::is_void_v<R>) {
        std::apply([&](auto&... a) { (obj->*method)(std::move(a)...); }, values);
        return EncodePayload(Void{});
      } else {
        return internal::EncodeReturn(
            std::apply([&](auto&... a) -> R { return (obj->*method)(std::move(a)...); }, values));
      }
    };
    methods_.push_back({std::move(name), internal::PointerBytes(method), std::move(invoke)});
    return *this;
  }

  class Instance;
  std::function<Result<std::unique_ptr<T>>(const Payload&)> construct_;
  std::function<Result<Payload>(T*)> save_;
  std::function<Status(T*, const Payload&)> load_;
};

template <typename T>
class ActorClass<T>::Instance : public ActorInstance {
 public:
  Instance(const ActorClass<T>* cls, std::unique_ptr<T> obj) : cls_(cls), obj_(std::move(obj)) {}
  Result<Payload> Invoke(const std::string& method, const Payload& args) override {
    for (const auto& m : cls_->methods_) {
      if (m.name == method)
        return internal::RunGuarded("method '" + method + "'",
                                    [&] { return m.invoke(obj_.get(), args); });
    }
    return Status(ErrorCode::kUnknownMethod,
                  "actor class '" + cls_->name() + "' has no method '" + method + "'");
  }
  bool checkpointable() const override { return cls_->save_ != nullptr; }
  Result<Payload> SaveState() override {
    if (!cls_->save_) return InvalidArgument("actor class '" + cls_->name() + "' has no Checkpoint");
    return internal::RunGuarded("SaveState", [&] { return cls_->save_(obj_.get()); });
  }
  Status LoadState(const Payload& state) override {
    if (!cls_->load_) return InvalidArgument("actor class '" + cls_->name() + "' has no Checkpoint");
    auto r = internal::RunGuarded("LoadState", [&]() -> Result<Payload> {
      RETURN_NOT_OK(cls_->load_(obj_.get(), state));
      return Payload{};
    });
    return r.status();
  }

 private:
  const ActorClass<T>* cls_;
  std::unique_ptr<T> obj_;
};

template <typename T>
Result<std::unique_ptr<ActorInstance>> ActorClass<T>::Construct(const Payload& args) const {
  if (!construct_)
    return InvalidArgument("actor class '" + name_ + "' declares no .Constructor<...>()");
  std::unique_ptr<T> obj;
  auto r = internal::RunGuarded("constructor of '" + name_ + "'", [&]() -> Result<Payload> {
    auto made = construct_(args);
    if (!made.ok()) return made.status();
    obj = std::move(made).value();
    return Payload{};
  });
  if (!r.ok()) return r.status();
  return std::unique_ptr<ActorInstance>(new Instance(this, std::move(obj)));
}

// The class registered for T (one per C++ type).
template <typename T>
ActorClass<T>*& ActorClassSlot() {
  static ActorClass<T>* slot = nullptr;
  return slot;
}

template <typename T>
ActorClass<T>& RegisterActor(const std::string& name) {
  auto*& slot = ActorClassSlot<T>();
  if (!slot) {
    slot = new ActorClass<T>(name);  // lives for the whole program
    ActorRegistry::Get().Add(slot);
  }
  return *slot;
}

}  // namespace tlt

#define TLT_ACTOR(Type) \
  static auto& TLT_CONCAT(tlt_actor_registration_, __LINE__) = ::tlt::RegisterActor<Type>(#Type)
