// CharVocab, JSONL datasets, prompt templates, the data cursor and reward functions: the
// LibTorch-free part of rl/.
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>

#include "rl/char_vocab.h"
#include "rl/dataset.h"
#include "rl/reward.h"

namespace tlt::rl {

// ---------------------------------------------------------------- CharVocab
Result<CharVocab> CharVocab::Create(const std::string& alphabet,
                                    const std::vector<std::string>& specials) {
  if (alphabet.empty()) return InvalidArgument("CharVocab: empty alphabet");
  CharVocab v;
  v.byte_ids_.fill(-1);
  v.tokens_ = specials;
  v.num_specials_ = static_cast<int64_t>(specials.size());
  for (unsigned char c : alphabet) {
    if (v.byte_ids_[c] >= 0) {
      return InvalidArgument(std::string("CharVocab: character '") + char(c) + "' repeated");
    }
    v.byte_ids_[c] = static_cast<int64_t>(v.tokens_.size());
    v.tokens_.push_back(std::string(1, char(c)));
  }
  return v;
}

Result<std::vector<int64_t>> CharVocab::Encode(const std::string& text) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    int64_t id = byte_ids_[static_cast<unsigned char>(text[i])];
    if (id < 0) {
      return InvalidArgument("CharVocab: character '" + text.substr(i, 1) + "' at offset " +
                             std::to_string(i) + " is not in the alphabet");
    }
    ids.push_back(id);
  }
  return ids;
}

Result<std::string> CharVocab::Decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return InvalidArgument("CharVocab: id " + std::to_string(id) + " out of range");
    }
    out += tokens_[id];
  }
  return out;
}

int64_t CharVocab::SpecialId(const std::string& name) const {
  for (int64_t i = 0; i < num_specials_; ++i) {
    if (tokens_[i] == name) return i;
  }
  return -1;
}

// ---------------------------------------------------------------- datasets
Result<std::string> PromptTemplate::Apply(const Example& e) const {
  std::string out;
  for (size_t i = 0; i < text_.size(); ++i) {
    char c = text_[i];
    if ((c == '{' || c == '}') && i + 1 < text_.size() && text_[i + 1] == c) {
      out += c;
      ++i;
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    size_t close = text_.find('}', i);
    if (close == std::string::npos) {
      return InvalidArgument("prompt template: unclosed '{' at offset " + std::to_string(i));
    }
    std::string key = text_.substr(i + 1, close - i - 1);
    if (key == "prompt") {
      out += e.prompt;
    } else if (key == "answer") {
      out += e.answer;
    } else if (e.fields.count(key)) {
      out += e.fields.at(key);
    } else {
      return InvalidArgument("prompt template: no field '" + key + "' in example " + e.source);
    }
    i = close;
  }
  return out;
}

Result<std::vector<Example>> ParseJsonl(const std::string& text, const std::string& source) {
  std::vector<Example> out;
  std::istringstream in(text);
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    const std::string where = source + ":" + std::to_string(number);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return InvalidArgument(where + ": not valid JSON");
    if (!j.is_object()) return InvalidArgument(where + ": not a JSON object");
    Example e;
    e.source = where;
    for (auto it = j.begin(); it != j.end(); ++it) {
      std::string value = it->is_string() ? it->get<std::string>() : it->dump();
      if (it.key() == "prompt") {
        if (!it->is_string()) return InvalidArgument(where + ": \"prompt\" is not a string");
        e.prompt = value;
      } else if (it.key() == "answer") {
        if (!it->is_string() && !it->is_number()) {
          return InvalidArgument(where + ": \"answer\" is not a string or number");
        }
        e.answer = value;
      } else {
        e.fields[it.key()] = value;
      }
    }
    if (!j.contains("prompt")) return InvalidArgument(where + ": missing \"prompt\"");
    if (!j.contains("answer")) return InvalidArgument(where + ": missing \"answer\"");
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<Example>> ReadJsonl(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open dataset " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ParseJsonl(ss.str(), path);
}

Status WriteJsonl(const std::string& path, const std::vector<Example>& examples) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return IoError("cannot write " + path);
  for (const Example& e : examples) {
    nlohmann::json j;
    j["prompt"] = e.prompt;
    j["answer"] = e.answer;
    for (const auto& [k, v] : e.fields) j[k] = v;
    f << j.dump() << "\n";
  }
  f.flush();
  return f ? Status::OK() : IoError("writing " + path);
}

std::vector<int64_t> DataCursor::Permutation(int64_t epoch) const {
  std::vector<int64_t> p(size_);
  std::iota(p.begin(), p.end(), 0);
  std::mt19937_64 rng(state_.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch));
  for (int64_t i = size_ - 1; i > 0; --i) {  // Fisher-Yates with our own draw: portable
    int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

std::vector<int64_t> DataCursor::Next(int64_t count) {
  std::vector<int64_t> out;
  if (size_ <= 0) return out;
  std::vector<int64_t> perm = Permutation(state_.epoch);
  while (static_cast<int64_t>(out.size()) < count) {
    if (state_.position >= size_) {
      ++state_.epoch;
      state_.position = 0;
      perm = Permutation(state_.epoch);
    }
    out.push_back(perm[state_.position++]);
  }
  return out;
}

Status DataCursor::Restore(const State& state) {
  if (state.position < 0 || state.position > size_ || state.epoch < 0) {
    return InvalidArgument("data cursor state (epoch " + std::to_string(state.epoch) +
                           ", position " + std::to_string(state.position) +
                           ") does not fit a dataset of " + std::to_string(size_));
  }
  state_ = state;
  return Status::OK();
}

// ---------------------------------------------------------------- rewards
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n$.");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n$.");
  return s.substr(b, e - b + 1);
}

std::optional<std::string> LastBoxed(const std::string& text) {
  size_t at = text.rfind("\\boxed{");
  if (at == std::string::npos) return std::nullopt;
  size_t i = at + 7;
  int depth = 1;
  for (size_t j = i; j < text.size(); ++j) {
    if (text[j] == '{') ++depth;
    if (text[j] == '}' && --depth == 0) return text.substr(i, j - i);
  }
  return std::nullopt;
}

// Matches -?digits with optional ,-groups, optional .digits, optional /digits.
size_t ScanNumber(const std::string& s, size_t i) {
  size_t j = i;
  if (j < s.size() && s[j] == '-') ++j;
  size_t digits = j;
  while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) ||
                          (s[j] == ',' && j + 1 < s.size() &&
                           std::isdigit(static_cast<unsigned char>(s[j + 1])) && j > digits))) {
    ++j;
  }
  if (j == digits) return i;
  if (j + 1 < s.size() && (s[j] == '.' || s[j] == '/') &&
      std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
    ++j;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
  }
  return j;
}

std::optional<Rational> Reduce(__int128 num, __int128 den) {
  if (den == 0) return std::nullopt;
  if (den < 0) num = -num, den = -den;
  __int128 a = num < 0 ? -num : num, b = den;
  while (b != 0) {
    __int128 t = a % b;
    a = b;
    b = t;
  }
  if (a == 0) a = 1;
  num /= a;
  den /= a;
  const __int128 lim = INT64_MAX;
  if (num > lim || -num > lim || den > lim) return std::nullopt;
  return Rational{static_cast<int64_t>(num), static_cast<int64_t>(den)};
}

std::optional<__int128> ParseDigits(const std::string& s) {
  if (s.empty() || s.size() > 30) return std::nullopt;
  __int128 v = 0;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace

std::optional<std::string> ExtractFinalAnswer(const std::string& text) {
  if (auto boxed = LastBoxed(text)) return Trim(*boxed);
  size_t hashes = text.rfind("####");
  if (hashes != std::string::npos) {
    std::string rest = Trim(text.substr(hashes + 4));
    size_t nl = rest.find('\n');
    return Trim(rest.substr(0, nl));
  }
  std::optional<std::string> last;
  for (size_t i = 0; i < text.size();) {
    size_t j = ScanNumber(text, i);
    if (j > i) {
      last = text.substr(i, j - i);
      i = j;
    } else {
      ++i;
    }
  }
  return last;
}

std::optional<Rational> ParseNumber(const std::string& raw) {
  std::string s;
  for (char c : Trim(raw)) {
    if (c != ',' && c != ' ') s += c;
  }
  if (s.rfind("\\frac{", 0) == 0 || s.rfind("\\dfrac{", 0) == 0) {  // \frac{a}{b}
    size_t a0 = s.find('{') + 1, a1 = s.find('}', a0);
    if (a1 == std::string::npos || a1 + 1 >= s.size() || s[a1 + 1] != '{' || s.back() != '}') {
      return std::nullopt;
    }
    return ParseNumber(s.substr(a0, a1 - a0) + "/" + s.substr(a1 + 2, s.size() - a1 - 3));
  }
  bool negative = !s.empty() && s[0] == '-';
  if (negative || (!s.empty() && s[0] == '+')) s = s.substr(1);
  size_t slash = s.find('/');
  if (slash != std::string::npos) {
    auto n = ParseNumber(s.substr(0, slash)), d = ParseNumber(s.substr(slash + 1));
    if (!n || !d || d->num == 0) return std::nullopt;
    auto r = Reduce(static_cast<__int128>(n->num) * d->den, static_cast<__int128>(n->den) * d->num);
    if (r && negative) r->num = -r->num;
    return r;
  }
  size_t dot = s.find('.');
  std::string whole = s.substr(0, dot), frac = dot == std::string::npos ? "" : s.substr(dot + 1);
  if (whole.empty() && frac.empty()) return std::nullopt;
  auto w = whole.empty() ? std::optional<__int128>(0) : ParseDigits(whole);
  auto f = frac.empty() ? std::optional<__int128>(0) : ParseDigits(frac);
  if (!w || !f || (dot != std::string::npos && frac.empty())) return std::nullopt;
  __int128 den = 1;
  for (size_t i = 0; i < frac.size(); ++i) den *= 10;
  auto r = Reduce(*w * den + *f, den);
  if (r && negative) r->num = -r->num;
  return r;
}

bool AnswersMatch(const std::string& predicted, const std::string& expected) {
  auto p = ParseNumber(predicted), e = ParseNumber(expected);
  if (p && e) return *p == *e;
  return Trim(predicted) == Trim(expected);
}

double MathReward(const std::string& response, const Example& example) {
  auto answer = ExtractFinalAnswer(response);
  return answer && AnswersMatch(*answer, example.answer) ? 1.0 : 0.0;
}

double FormatReward(const std::string& response, const Example&) {
  return LastBoxed(response) || response.find("####") != std::string::npos ? 1.0 : 0.0;
}

RewardRegistry::RewardRegistry() {
  functions_["math"] = MathReward;
  functions_["format"] = FormatReward;
  functions_["math_and_format"] = [](const std::string& r, const Example& e) {
    return MathReward(r, e) + 0.1 * FormatReward(r, e);
  };
}

Status RewardRegistry::Register(const std::string& name, RewardFunction function) {
  if (!function) return InvalidArgument("reward '" + name + "': empty function");
  if (!functions_.emplace(name, std::move(function)).second) {
    return InvalidArgument("reward '" + name + "' is already registered");
  }
  return Status::OK();
}

Result<RewardFunction> RewardRegistry::Get(const std::string& name) const {
  auto it = functions_.find(name);
  if (it == functions_.end()) {
    std::string known;
    for (const auto& [n, f] : functions_) known += (known.empty() ? "" : ", ") + n;
    return NotFound("no reward function '" + name + "' (registered: " + known + ")");
  }
  return it->second;
}

std::vector<std::string> RewardRegistry::Names() const {
  std::vector<std::string> out;
  for (const auto& [n, f] : functions_) out.push_back(n);
  return out;
}

}  // namespace tlt::rl
