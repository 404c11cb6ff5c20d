#!/usr/bin/env python3
"""Hugging Face transformers `generate` on the checkpoint engine_bench wrote, same prompts,
greedy, same batch sizes; plus the memory-bandwidth floor: the device-to-device copy
bandwidth measured here, and the tokens/s a decode step could reach if it only had to read
the weights and the KV cache once (bytes per step / bandwidth).

    python3 bench/hf_generate_bench.py DIR [--batch-sizes 1,8,32,128] [--new-tokens 128]
Prints one JSON object.
"""
import argparse, json, time

import torch
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--batch-sizes", default="1,8,32,128")
ap.add_argument("--new-tokens", type=int, default=128)
ap.add_argument("--prompt-tokens", type=int, default=32)
args = ap.parse_args()

out = {}
# Copy bandwidth: bytes read + written per second for a 1 GiB device-to-device copy.
src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
dst = torch.empty_like(src)
for _ in range(3):
    dst.copy_(src)
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(10):
    dst.copy_(src)
torch.cuda.synchronize()
bw = 2 * src.numel() * 10 / (time.perf_counter() - t)
out["copy_bandwidth_gb_per_s"] = bw / 1e9
del src, dst

model = AutoModelForCausalLM.from_pretrained(args.dir, dtype=torch.bfloat16).cuda().eval()
cfg = model.config
weights = sum(p.numel() * p.element_size() for p in model.parameters())
head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
kv_per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * 2
out["weights_bytes"] = weights
for part in args.batch_sizes.split(","):
    bs = int(part)
    prompts = [[(i * 131 + t * 7) % 1000 + 10 for t in range(args.prompt_tokens)] for i in range(bs)]
    ids = torch.tensor(prompts, device="cuda")
    mask = torch.ones_like(ids)
    kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
              pad_token_id=0)
    model.generate(ids, attention_mask=mask, **dict(kw, max_new_tokens=8, min_new_tokens=8))
    torch.cuda.synchronize()
    t = time.perf_counter()
    model.generate(ids, attention_mask=mask, **kw)
    torch.cuda.synchronize()
    s = time.perf_counter() - t
    out[f"hf_tokens_per_s_bs{bs}"] = bs * args.new_tokens / s
    avg_context = args.prompt_tokens + args.new_tokens / 2
    step_bytes = weights + bs * avg_context * kv_per_token
    out[f"floor_tokens_per_s_bs{bs}"] = bs * bw / 2 / step_bytes  # reads only: half the copy traffic
print(json.dumps(out))
