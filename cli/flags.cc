#include "cli/flags.h"

#include <stdexcept>

namespace tlt::cli {

Result<Flags> Flags::Parse(int argc, char** argv, int first) {
  Flags f;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      if (!f.values_.empty())
        return InvalidArgument("unexpected word '" + arg + "' after flags");
      f.words_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      value = argv[++i];
    } else {
      value = "true";
    }
    if (name.empty()) return InvalidArgument("empty flag name in '" + arg + "'");
    f.values_[name] = value;
  }
  return f;
}

std::string Flags::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

Result<double> Flags::GetNumber(const std::string& name, double fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  try {
    size_t used = 0;
    double v = std::stod(it->second, &used);
    if (used != it->second.size()) throw std::invalid_argument("trailing");
    return v;
  } catch (...) {
    return InvalidArgument("--" + name + " needs a number, got '" + it->second + "'");
  }
}

Status Flags::Allow(const std::set<std::string>& allowed) const {
  for (const auto& [name, value] : values_) {
    if (allowed.count(name)) continue;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "--" : ", --") + a;
    return InvalidArgument("unknown flag --" + name + " (this command takes: " + list + ")");
  }
  return Status::OK();
}

}  // namespace tlt::cli
