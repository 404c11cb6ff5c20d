#!/usr/bin/env python3
"""Makes Hugging Face reference fixtures for tests/models/hf_fixture_test.cc.

Run on a machine with PyTorch, transformers and tokenizers (no internet needed):
    python3 scripts/hf/make_fixtures.py --out tests/models/fixtures/hf \
        --tokenizer tests/models/fixtures/qwen3_tokenizer.json

For each small random checkpoint (Llama and Qwen2; GQA ratios, tied/untied heads, q/k/v bias,
rope theta, explicit head_dim) it writes <out>/<name>/:
  config.json, model.safetensors (or shards + model.safetensors.index.json): save_pretrained
  reference.json: {"inputs": [[ids]], "greedy": [[ids]], "max_new_tokens": n}
  logits.safetensors: "logits.<i>" = float32 [len(inputs[i]), vocab] logits of inputs[i]
References are computed in float64 on CPU from the float32 weights that are saved (no TF32, no
kernel differences), greedy by full recompute at every step. It also writes
<out>/tokenizer_cases.json: HF `tokenizers` encodings of tricky strings (the texts of
tests/models/fixtures/qwen3_tokenizer_cases.json plus a few more).
Files are small (hidden 64, 2 layers, vocab 256): a few MB in all, meant to be committed.
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

VOCAB = 256

CHECKPOINTS = [
    # name, architecture, extra config keys, max_shard_size (None: single file)
    ("llama_gqa_untied", "llama",
     dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
          rope_theta=10000.0), None),
    ("llama_mha_tied_bias_headdim", "llama",
     dict(num_attention_heads=4, num_key_value_heads=4, head_dim=32, tie_word_embeddings=True,
          attention_bias=True, rope_theta=500000.0), None),
    ("qwen2_gqa4_tied", "qwen2",
     dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=True,
          rope_theta=1000000.0), None),
    ("qwen2_gqa4_untied_sharded", "qwen2",
     dict(num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=False,
          rope_theta=10000.0), "200KB"),
]

INPUTS = [
    [1, 17, 42, 99, 3, 250, 7, 7, 128, 64, 5, 200],
    [2, 9],
    [255, 0, 31, 77, 140, 12, 8],
]
MAX_NEW_TOKENS = 16

EXTRA_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "x = [1, 2, 3]\nprint(sum(x))  # 6\n\n\n",
    "Ünïcödé ΑΒΓ абв עברית العربية हिन्दी",
    "<think>\nLet me compute 12*13 = 156.\n</think>\n\\boxed{156}",
]


def make_model(arch, extra, seed):
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  max_position_embeddings=256, rms_norm_eps=1e-6, initializer_range=0.1,
                  bos_token_id=1, eos_token_id=2, torch_dtype="float32")
    common.update(extra)
    if arch == "llama":
        config = LlamaConfig(**common)
        cls = LlamaForCausalLM
    else:
        config = Qwen2Config(**common, use_sliding_window=False)
        cls = Qwen2ForCausalLM
    torch.manual_seed(seed)
    model = cls(config).float().eval()
    with torch.no_grad():  # non-trivial norms and biases so that the test exercises them
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.1)
    return model


@torch.no_grad()
def logits_of(model64, ids):
    return model64(torch.tensor([ids])).logits[0]


@torch.no_grad()
def greedy(model64, ids, n):
    ids = list(ids)
    out = []
    for _ in range(n):
        nxt = int(logits_of(model64, ids)[-1].argmax())
        out.append(nxt)
        ids.append(nxt)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/models/fixtures/hf")
    ap.add_argument("--tokenizer", default="tests/models/fixtures/qwen3_tokenizer.json")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_grad_enabled(False)

    for seed, (name, arch, extra, shard) in enumerate(CHECKPOINTS):
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        model = make_model(arch, extra, seed)
        kwargs = dict(safe_serialization=True)
        if shard:
            kwargs["max_shard_size"] = shard
        model.save_pretrained(d, **kwargs)
        model64 = model.to(torch.float64)
        model64.config._attn_implementation = "eager"
        tensors = {}
        ref = {"inputs": INPUTS, "greedy": [], "max_new_tokens": MAX_NEW_TOKENS}
        for i, ids in enumerate(INPUTS):
            tensors[f"logits.{i}"] = logits_of(model64, ids).to(torch.float32).contiguous()
            ref["greedy"].append(greedy(model64, ids, MAX_NEW_TOKENS))
        save_file(tensors, os.path.join(d, "logits.safetensors"))
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump(ref, f)
        print("wrote", d)

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(args.tokenizer)
    cases_path = os.path.join(os.path.dirname(args.tokenizer), "qwen3_tokenizer_cases.json")
    texts = [c["text"] for c in json.load(open(cases_path))] if os.path.exists(cases_path) else []
    texts += EXTRA_TEXTS
    cases = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in texts]
    with open(os.path.join(args.out, "tokenizer_cases.json"), "w") as f:
        json.dump(cases, f, ensure_ascii=False)
    print("wrote", os.path.join(args.out, "tokenizer_cases.json"))


if __name__ == "__main__":
    main()
