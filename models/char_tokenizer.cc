#include "models/tokenizer.h"
#include "models/unicode.h"

namespace tlt::models {

Result<std::unique_ptr<CharTokenizer>> CharTokenizer::Create(
    const std::string& alphabet, const std::vector<std::string>& specials) {
  std::unique_ptr<CharTokenizer> t(new CharTokenizer());
  auto add = [&](const std::string& token) -> Status {
    if (token.empty()) return InvalidArgument("char tokenizer: empty token");
    if (!t->ids_.emplace(token, static_cast<int64_t>(t->tokens_.size())).second) {
      return InvalidArgument("char tokenizer: duplicate token '" + token + "'");
    }
    t->tokens_.push_back(token);
    return Status::OK();
  };
  for (const auto& s : specials) RETURN_NOT_OK(add(s));
  t->specials_ = specials;
  for (const CodePoint& cp : DecodeUtf8(alphabet)) {
    RETURN_NOT_OK(add(alphabet.substr(cp.begin, cp.end - cp.begin)));
  }
  return t;
}

Result<std::vector<int64_t>> CharTokenizer::Encode(const std::string& text) const {
  std::vector<int64_t> out;
  const std::vector<CodePoint> cps = DecodeUtf8(text);
  size_t i = 0;  // index into cps
  while (i < cps.size()) {
    const size_t at = cps[i].begin;
    size_t best = 0;
    for (const auto& s : specials_) {
      if (s.size() > best && text.compare(at, s.size(), s) == 0) best = s.size();
    }
    if (best > 0) {
      out.push_back(ids_.at(text.substr(at, best)));
      while (i < cps.size() && cps[i].begin < at + best) ++i;
      continue;
    }
    const std::string ch = text.substr(at, cps[i].end - at);
    auto it = ids_.find(ch);
    if (it == ids_.end()) {
      return InvalidArgument("char tokenizer: character '" + ch + "' at byte " +
                             std::to_string(at) + " is not in the alphabet");
    }
    out.push_back(it->second);
    ++i;
  }
  return out;
}

Result<std::string> CharTokenizer::Decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return InvalidArgument("char tokenizer: unknown id " + std::to_string(id));
    }
    out += tokens_[id];
  }
  return out;
}

std::optional<int64_t> CharTokenizer::TokenToId(const std::string& token) const {
  auto it = ids_.find(token);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

}  // namespace tlt::models
