// Flags: the small command-line parser of the `tlt` command.
//
// Words before the first "--flag" are the command path ("list actors"); "--name value"
// and "--name=value" set flags; "--name" alone before another flag or the end is a switch.
// Every command declares the flags it accepts, so a misspelt flag is an error that names
// it and lists the valid ones.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace tlt::cli {

class Flags {
 public:
  static Result<Flags> Parse(int argc, char** argv, int first);
  const std::vector<std::string>& words() const { return words_; }
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  Result<double> GetNumber(const std::string& name, double fallback) const;
  // Fails naming the first flag not in `allowed`.
  Status Allow(const std::set<std::string>& allowed) const;

 private:
  std::vector<std::string> words_;
  std::map<std::string, std::string> values_;
};

}  // namespace tlt::cli
