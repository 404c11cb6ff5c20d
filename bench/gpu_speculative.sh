#!/usr/bin/env bash
# GPU benchmark of speculative decoding: a Qwen2-architecture target trained on the synthetic
# task, a drafter trained on its greedy outputs, tokens/s with and without SD per batch size.
#   bench/gpu_speculative.sh BUILD_DIR OUT_DIR      (run by scripts/gpu/check.sh bench)
set -uo pipefail
build=$1; out=$2
[ -x "$build/bench/speculative_bench" ] || cmake --build "$build" --target speculative_bench > /dev/null
"$build/bench/speculative_bench" "${@:3}" > "$out/speculative_bench.json" 2> "$out/speculative_bench.log" \
  || { tail -5 "$out/speculative_bench.log"; exit 1; }
python3 - "$out/speculative_bench.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"target {r['target_parameters']/1e6:.0f}M params; held-out loss {r['sft']['heldout_loss']:.3f}, "
      f"token accuracy {r['sft']['heldout_token_accuracy']:.3f}; drafter top-1 {r['drafter']['top1_accuracy']:.3f}")
rows = r["throughput"]
names = r["configs"]
print("batch " + " ".join(f"{n:>14}" for n in names) + "   (tokens/s; SD: speedup vs plain, accept length)")
for row in rows:
    cells = []
    for n in names:
        e = row[n]
        if "mean_accept_length" in e and n != "plain_eager":
            cells.append(f"{e['tokens_per_s']:6.0f} {e['tokens_per_s']/row['plain']['tokens_per_s']:4.2f}x/{e['mean_accept_length']:.1f}")
        else:
            cells.append(f"{e['tokens_per_s']:14.0f}")
    print(f"{row['batch']:5d} " + " ".join(f"{c:>14}" for c in cells))
phased = [(row["batch"], n, row[n]) for row in rows for n in names if "phase_seconds" in row[n]]
if phased:
    print("ms per SD step, by phase (configs with :phases; synchronized between phases)")
    for bs, n, e in phased:
        steps = max(e["sd_on_steps"], 1)
        cells = " ".join(f"{k} {v * 1e3 / steps:.3f}" for k, v in e["phase_seconds"].items())
        print(f"  batch {bs} {n}: {cells}; step {e['seconds'] * 1e3 / steps:.3f}")
PY
