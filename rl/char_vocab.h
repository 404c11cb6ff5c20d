// CharVocab: a character-level vocabulary for the synthetic task and tests.
//
// Ids 0 .. specials-1 are the special tokens in the given order (by convention "<pad>", "<eos>"),
// then one id per byte of the alphabet. Encode() maps each byte of the text to its id and fails
// on a byte outside the alphabet (naming it and its offset); special tokens are never produced by
// Encode. Decode() writes specials as their names. models/tokenizer.h declares a CharTokenizer
// with the same id layout; this one exists because rl/ must build before it lands (ASCII only).
//
// Immutable after construction; thread-safe. No LibTorch.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace tlt::rl {

class CharVocab {
 public:
  // Fails on an empty or repeated alphabet character.
  static Result<CharVocab> Create(const std::string& alphabet,
                                  const std::vector<std::string>& specials = {"<pad>", "<eos>"});
  Result<std::vector<int64_t>> Encode(const std::string& text) const;
  Result<std::string> Decode(const std::vector<int64_t>& ids) const;
  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }
  // Id of a special token by name, or -1.
  int64_t SpecialId(const std::string& name) const;
  int64_t pad_id() const { return SpecialId("<pad>"); }
  int64_t eos_id() const { return SpecialId("<eos>"); }

 private:
  std::vector<std::string> tokens_;      // id -> text
  std::array<int64_t, 256> byte_ids_{};  // byte -> id, -1 when absent
  int64_t num_specials_ = 0;
};

}  // namespace tlt::rl
