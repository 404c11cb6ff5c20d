// Unicode helpers for tokenizers: UTF-8 decoding and the character classes the byte-level BPE
// pre-tokenizer regexes use (\p{L}, \p{N}, \s). Tables are generated from Python's unicodedata by
// scripts/hf/gen_unicode_tables.py. Pure functions, thread-safe, no LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tlt::models {

bool IsUnicodeLetter(char32_t cp);  // general category L*
bool IsUnicodeNumber(char32_t cp);  // general category N*
// The Unicode White_Space property (what \s matches in the HF regexes).
inline bool IsUnicodeWhitespace(char32_t cp) {
  return (cp >= 0x9 && cp <= 0xD) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// One decoded code point and the bytes [begin, end) it occupies in the UTF-8 text.
struct CodePoint {
  char32_t value;
  size_t begin, end;
};
// Decodes UTF-8; an invalid byte decodes as itself (value = the byte, one byte long) so that
// every byte of the input is covered exactly once.
std::vector<CodePoint> DecodeUtf8(const std::string& text);
// Appends the UTF-8 encoding of cp.
void AppendUtf8(char32_t cp, std::string* out);

}  // namespace tlt::models
