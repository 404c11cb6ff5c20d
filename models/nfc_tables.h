// Unicode data for NFC normalization (models/unicode.h, NfcNormalize), generated into
// nfc_tables.cc by scripts/hf/gen_nfc_tables.py. Every table is sorted by its first field(s),
// for binary search.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tlt::models::nfc {

struct CombiningClassRange {  // code points first..last have canonical combining class `ccc`
  char32_t first, last;
  uint8_t ccc;
};
struct Decomposition {  // cp -> kDecompositionCodePoints[offset, offset + length), one level
  char32_t cp;
  uint16_t offset;
  uint8_t length;
};
struct Composition {  // primary composite: first + second -> composite
  char32_t first, second, composite;
};

extern const CombiningClassRange kCombiningClasses[];
extern const size_t kCombiningClassesSize;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionsSize;
extern const char32_t kDecompositionCodePoints[];
extern const size_t kDecompositionCodePointsSize;
extern const Composition kCompositions[];
extern const size_t kCompositionsSize;

}  // namespace tlt::models::nfc
