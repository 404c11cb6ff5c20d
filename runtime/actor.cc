#include "runtime/actor.h"

#include <glog/logging.h>

namespace tlt {

std::vector<std::string> ActorClassBase::MethodNames() const {
  std::vector<std::string> names;
  for (const auto& m : methods_) names.push_back(m.name);
  return names;
}

ActorRegistry& ActorRegistry::Get() {
  static auto* registry = new ActorRegistry();
  return *registry;
}

void ActorRegistry::Add(ActorClassBase* cls) {
  auto [it, inserted] = classes_.emplace(cls->name(), cls);
  CHECK(inserted) << "two actor classes registered as '" << cls->name() << "'";
}

const ActorClassBase* ActorRegistry::Find(const std::string& name) const {
  auto it = classes_.find(name);
  return it == classes_.end() ? nullptr : it->second;
}

std::vector<std::string> ActorRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, cls] : classes_) names.push_back(name);
  return names;
}

namespace internal {

Result<Payload> RunGuarded(const std::string& what_ran,
                           const std::function<Result<Payload>()>& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Status(ErrorCode::kActorError, what_ran + " threw: " + e.what());
  } catch (...) {
    return Status(ErrorCode::kActorError, what_ran + " threw a non-standard exception");
  }
}

}  // namespace internal
}  // namespace tlt
