#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/tokenizer.h"
#include "models/unicode.h"

namespace tlt::models {
namespace {

using nlohmann::json;

// The split regexes this scanner implements (tokenizers' JSON spelling).
const char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool IsNewline(char32_t c) { return c == '\r' || c == '\n'; }
bool IsOther(char32_t c) {  // [^\s\p{L}\p{N}]
  return !IsUnicodeWhitespace(c) && !IsUnicodeLetter(c) && !IsUnicodeNumber(c);
}
char32_t Lower(char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// Length (in code points) of the match of the split regex at cps[i], leftmost-first over the
// alternatives, as the regex engine would find it.
size_t MatchAt(const std::vector<CodePoint>& cps, size_t i, int max_digits) {
  const size_t n = cps.size();
  auto at = [&](size_t k) -> char32_t { return k < n ? cps[k].value : 0; };
  auto letter = [&](size_t k) { return k < n && IsUnicodeLetter(cps[k].value); };
  auto space = [&](size_t k) { return k < n && IsUnicodeWhitespace(cps[k].value); };
  // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (at(i) == '\'') {
    const char32_t a = Lower(at(i + 1)), b = Lower(at(i + 2));
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  }
  // 2. [^\r\n\p{L}\p{N}]?\p{L}+
  {
    size_t k = i;
    const char32_t c = at(i);
    if (!IsNewline(c) && !IsUnicodeLetter(c) && !IsUnicodeNumber(c) && letter(i + 1)) ++k;
    if (letter(k)) {
      while (letter(k)) ++k;
      return k - i;
    }
  }
  // 3. \p{N} or \p{N}{1,3}
  if (IsUnicodeNumber(at(i)) && i < n) {
    size_t k = i;
    while (k < n && k - i < static_cast<size_t>(max_digits) && IsUnicodeNumber(cps[k].value)) ++k;
    return k - i;
  }
  // 4.  ?[^\s\p{L}\p{N}]+[\r\n]*
  {
    size_t k = i;
    if (at(k) == ' ' && k + 1 < n && IsOther(at(k + 1))) ++k;
    if (k < n && IsOther(at(k))) {
      while (k < n && IsOther(at(k))) ++k;
      while (k < n && IsNewline(at(k))) ++k;
      return k - i;
    }
  }
  // Whitespace run [i, j).
  size_t j = i;
  while (space(j)) ++j;
  if (j == i) return 1;  // unreachable: every code point is L, N, whitespace or other
  // 5. \s*[\r\n]+ : up to and including the last newline of the run.
  for (size_t k = j; k > i; --k) {
    if (IsNewline(at(k - 1))) return k - i;
  }
  // 6. \s+(?!\S) : the run, minus its last space when a non-space follows.
  if (j == n) return j - i;
  if (j - 1 > i) return j - 1 - i;
  // 7. \s+
  return j - i;
}

// GPT-2's reversible byte -> printable code point mapping.
std::vector<char32_t> ByteToUnicode() {
  std::vector<char32_t> map(256, 0);
  std::vector<bool> direct(256, false);
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) map[b] = direct[b] ? static_cast<char32_t>(b) : next++;
  return map;
}

}  // namespace

Result<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open tokenizer file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return FromJson(ss.str(), path);
}

Result<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromJson(const std::string& json_text,
                                                             const std::string& source) {
  auto bad = [&](const std::string& m) {
    return InvalidArgument("tokenizer " + source + ": " + m);
  };
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
  // Normalizer: none or NFC (see the class comment).
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const std::string type = j["normalizer"].value("type", "");
    if (type != "NFC") return bad("unsupported normalizer '" + type + "'");
    t->normalize_nfc_ = true;
  }
  // Pre-tokenizer: Sequence[Split(known regex, Isolated), ByteLevel(use_regex=false)].
  const json& pre = j.value("pre_tokenizer", json());
  bool pre_ok = false;
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
      pre["pretokenizers"].size() == 2) {
    const json& split = pre["pretokenizers"][0];
    const json& bytes = pre["pretokenizers"][1];
    const std::string regex = split.contains("pattern") && split["pattern"].contains("Regex")
                                  ? split["pattern"]["Regex"].get<std::string>()
                                  : "";
    const bool byte_level = bytes.value("type", "") == "ByteLevel" &&
                            !bytes.value("use_regex", true) &&
                            !bytes.value("add_prefix_space", false);
    if (split.value("type", "") == "Split" && split.value("behavior", "") == "Isolated" &&
        !split.value("invert", false) && byte_level) {
      if (regex == kQwen2Pattern) {
        t->max_digits_ = 1;
        pre_ok = true;
      } else if (regex == kLlama3Pattern) {
        t->max_digits_ = 3;
        pre_ok = true;
      }
    }
  }
  if (!pre_ok) return bad("unsupported pre_tokenizer (need the Qwen2 or Llama-3 byte-level split)");
  const json& model = j.value("model", json());
  if (!model.is_object() || model.value("type", "") != "BPE" || !model.contains("vocab") ||
      !model["vocab"].is_object() || !model.contains("merges") || !model["merges"].is_array()) {
    return bad("model must be BPE with vocab and merges");
  }
  t->ignore_merges_ = model.value("ignore_merges", false);
  int64_t max_id = -1;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    const int64_t id = it.value().get<int64_t>();
    t->token_to_id_[it.key()] = id;
    max_id = std::max(max_id, id);
  }
  const json added = j.value("added_tokens", json::array());
  for (const auto& a : added) max_id = std::max(max_id, a.value("id", int64_t{-1}));
  t->id_to_token_.assign(max_id + 1, "");
  t->is_added_.assign(max_id + 1, false);
  for (const auto& [token, id] : t->token_to_id_) t->id_to_token_[id] = token;
  for (const auto& a : added) {
    const std::string content = a.value("content", "");
    const int64_t id = a.value("id", int64_t{-1});
    if (content.empty() || id < 0) return bad("bad added token");
    t->added_.emplace_back(content, id);
    t->id_to_token_[id] = content;
    t->is_added_[id] = true;
  }
  std::stable_sort(t->added_.begin(), t->added_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  int32_t rank = 0;
  for (const auto& m : model["merges"]) {
    std::string left, right;
    if (m.is_array() && m.size() == 2) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos) return bad("merge '" + s + "' has no space");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else {
      return bad("bad merge entry");
    }
    auto l = t->token_to_id_.find(left), r = t->token_to_id_.find(right);
    auto merged = t->token_to_id_.find(left + right);
    if (l == t->token_to_id_.end() || r == t->token_to_id_.end() ||
        merged == t->token_to_id_.end()) {
      return bad("merge '" + left + " " + right + "' uses tokens not in the vocabulary");
    }
    const uint64_t key =
        (static_cast<uint64_t>(l->second) << 32) | static_cast<uint64_t>(r->second);
    t->merges_.emplace(key, Merge{rank++, static_cast<int32_t>(merged->second)});
  }
  const std::vector<char32_t> map = ByteToUnicode();
  for (int b = 0; b < 256; ++b) {
    AppendUtf8(map[b], &t->byte_to_unicode_[b]);
    t->unicode_to_byte_[map[b]] = static_cast<uint8_t>(b);
    if (!t->token_to_id_.count(t->byte_to_unicode_[b])) {
      return bad("vocabulary lacks the byte token for byte " + std::to_string(b));
    }
  }
  return t;
}

std::vector<std::string> BpeTokenizer::PreTokenize(const std::string& text) const {
  std::vector<std::string> out;
  const std::vector<CodePoint> cps = DecodeUtf8(text);
  size_t i = 0;
  while (i < cps.size()) {
    const size_t len = MatchAt(cps, i, max_digits_);
    out.push_back(text.substr(cps[i].begin, cps[i + len - 1].end - cps[i].begin));
    i += len;
  }
  return out;
}

Status BpeTokenizer::EncodeWord(const std::string& piece, std::vector<int64_t>* out) const {
  if (ignore_merges_) {  // a word that is a whole token is emitted as is (Llama-3)
    std::string mapped;
    for (unsigned char b : piece) mapped += byte_to_unicode_[b];
    auto it = token_to_id_.find(mapped);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
      return Status::OK();
    }
  }
  std::vector<int64_t> symbols;
  symbols.reserve(piece.size());
  for (unsigned char b : piece) symbols.push_back(token_to_id_.at(byte_to_unicode_[b]));
  while (symbols.size() > 1) {
    int32_t best_rank = INT32_MAX;
    size_t best = 0;
    int32_t merged = -1;
    for (size_t k = 0; k + 1 < symbols.size(); ++k) {
      const uint64_t key =
          (static_cast<uint64_t>(symbols[k]) << 32) | static_cast<uint64_t>(symbols[k + 1]);
      auto it = merges_.find(key);
      if (it != merges_.end() && it->second.rank < best_rank) {
        best_rank = it->second.rank;
        best = k;
        merged = it->second.merged_id;
      }
    }
    if (merged < 0) break;
    symbols[best] = merged;
    symbols.erase(symbols.begin() + best + 1);
  }
  out->insert(out->end(), symbols.begin(), symbols.end());
  return Status::OK();
}

Result<std::vector<int64_t>> BpeTokenizer::Encode(const std::string& text) const {
  std::vector<int64_t> out;
  size_t start = 0;  // beginning of the plain text not yet encoded
  auto flush = [&](size_t end) -> Status {
    if (end <= start) return Status::OK();
    const std::string plain = text.substr(start, end - start);
    for (const std::string& piece : PreTokenize(normalize_nfc_ ? NfcNormalize(plain) : plain)) {
      RETURN_NOT_OK(EncodeWord(piece, &out));
    }
    return Status::OK();
  };
  size_t pos = 0;
  while (pos < text.size()) {
    const std::pair<std::string, int64_t>* hit = nullptr;
    if (!added_.empty()) {
      for (const auto& a : added_) {  // longest first
        if (text.compare(pos, a.first.size(), a.first) == 0) {
          hit = &a;
          break;
        }
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    RETURN_NOT_OK(flush(pos));
    out.push_back(hit->second);
    pos += hit->first.size();
    start = pos;
  }
  RETURN_NOT_OK(flush(text.size()));
  return out;
}

Result<std::string> BpeTokenizer::Decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size() || id_to_token_[id].empty()) {
      return InvalidArgument("tokenizer: unknown id " + std::to_string(id));
    }
    if (is_added_[id]) {
      out += id_to_token_[id];
      continue;
    }
    for (const CodePoint& cp : DecodeUtf8(id_to_token_[id])) {
      auto it = unicode_to_byte_.find(cp.value);
      if (it == unicode_to_byte_.end()) {
        return Internal("tokenizer: token " + std::to_string(id) + " has a non byte-level char");
      }
      out.push_back(static_cast<char>(it->second));
    }
  }
  return out;
}

std::optional<int64_t> BpeTokenizer::TokenToId(const std::string& token) const {
  for (const auto& a : added_) {
    if (a.first == token) return a.second;
  }
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

}  // namespace tlt::models
