// NFC normalization (Unicode Standard Annex #15): canonical decomposition, canonical ordering,
// canonical composition, with the tables of nfc_tables.cc and Hangul syllables computed.
#include <algorithm>
#include <string>

#include "models/nfc_tables.h"
#include "models/unicode.h"

namespace tlt::models {
namespace {

// Hangul syllables: S = SBase + (L index * VCount + V index) * TCount + T index.
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;
// An invalid UTF-8 byte b travels through as kInvalidBase + b (outside Unicode): a starter that
// never composes, written back as the byte itself.
constexpr char32_t kInvalidBase = 0x110000;

int CombiningClass(char32_t cp) {
  const nfc::CombiningClassRange* begin = nfc::kCombiningClasses;
  const nfc::CombiningClassRange* end = begin + nfc::kCombiningClassesSize;
  const auto* it = std::upper_bound(begin, end, cp, [](char32_t v, const auto& r) {
    return v < r.first;
  });
  if (it == begin) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

void Decompose(char32_t cp, std::u32string* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  const nfc::Decomposition* begin = nfc::kDecompositions;
  const nfc::Decomposition* end = begin + nfc::kDecompositionsSize;
  const auto* it = std::lower_bound(begin, end, cp, [](const auto& d, char32_t v) {
    return d.cp < v;
  });
  if (it == end || it->cp != cp) {
    out->push_back(cp);
    return;
  }
  for (int i = 0; i < it->length; ++i) Decompose(nfc::kDecompositionCodePoints[it->offset + i], out);
}

// The primary composite of a + b, or 0.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const nfc::Composition* begin = nfc::kCompositions;
  const nfc::Composition* end = begin + nfc::kCompositionsSize;
  const auto* it = std::lower_bound(begin, end, std::make_pair(a, b), [](const auto& c, auto v) {
    return c.first < v.first || (c.first == v.first && c.second < v.second);
  });
  return it != end && it->first == a && it->second == b ? it->composite : 0;
}

}  // namespace

std::string NfcNormalize(const std::string& text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return (c & 0x80) == 0; })) return text;
  // 1. Canonical decomposition.
  std::u32string d;
  d.reserve(text.size());
  for (const CodePoint& c : DecodeUtf8(text)) {
    const bool invalid = c.end - c.begin == 1 && c.value >= 0x80;
    if (invalid) {
      d.push_back(kInvalidBase + c.value);
    } else {
      Decompose(c.value, &d);
    }
  }
  // 2. Canonical ordering: a stable sort of each run of non-starters by combining class.
  std::vector<int> cc(d.size());
  for (size_t i = 0; i < d.size(); ++i) cc[i] = d[i] >= kInvalidBase ? 0 : CombiningClass(d[i]);
  for (size_t i = 1; i < d.size(); ++i) {
    for (size_t j = i; j > 0 && cc[j] != 0 && cc[j - 1] > cc[j]; --j) {
      std::swap(d[j], d[j - 1]);
      std::swap(cc[j], cc[j - 1]);
    }
  }
  // 3. Canonical composition: a character joins the last starter unless a character between
  // them is a starter or has a class >= its own (blocked).
  std::u32string out;
  out.reserve(d.size());
  long starter = -1;  // index in `out` of the last starter
  int last_cc = -1;   // class of the last character appended after it (-1: none)
  for (size_t i = 0; i < d.size(); ++i) {
    const char32_t c = d[i];
    if (starter >= 0 && c < kInvalidBase && out[starter] < kInvalidBase &&
        !(last_cc != -1 && (last_cc == 0 || last_cc >= cc[i]))) {
      const char32_t composite = Compose(out[starter], c);
      if (composite != 0) {
        out[starter] = composite;
        continue;
      }
    }
    if (cc[i] == 0) {
      starter = static_cast<long>(out.size());
      last_cc = -1;
    } else {
      last_cc = cc[i];
    }
    out.push_back(c);
  }
  std::string utf8;
  utf8.reserve(text.size());
  for (char32_t c : out) {
    if (c >= kInvalidBase) {
      utf8.push_back(static_cast<char>(c - kInvalidBase));
    } else {
      AppendUtf8(c, &utf8);
    }
  }
  return utf8;
}

}  // namespace tlt::models
