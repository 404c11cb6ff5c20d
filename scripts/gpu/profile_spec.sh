#!/usr/bin/env bash
# Per-kernel device time of the SD step's phases on the GPU machine, with Nsight Compute:
#   bash scripts/gpu/profile_spec.sh BUILD_DIR OUT_DIR [STRATEGY]       (after check.sh's build)
# PROFILE_RANGES picks the ranges (default: all three).
# Runs a short speculative_bench (untrained models: the kernels and tree shapes are what
# matter, not the accepted lengths) under ncu once per NVTX range of the SD step (tlt_catch_up,
# tlt_draft, tlt_verify; gpu/trace_range.h), measuring gpu__time_duration of each kernel, graph
# nodes included, and prints microseconds per kernel name and per step. ncu replays each kernel
# alone, so the figures leave out launch gaps. Clocks stay as they are (--clock-control none).
set -uo pipefail
build=$1; out=$2; strategy=${3:-10_4_48}; ranges=${PROFILE_RANGES:-tlt_verify tlt_draft tlt_catch_up}
# The unpacked Debian libraries the build links (scripts/gpu/check.sh sets them up).
[ -f /tmp/deps/env.sh ] && source /tmp/deps/env.sh
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
[ -x "$ncu" ] || { echo "profile: ncu not found"; exit 0; }
for range in $ranges; do
  timeout 200 "$ncu" --nvtx --nvtx-include "$range/" --metrics gpu__time_duration.sum \
    --clock-control none --cache-control none --launch-skip 300 --launch-count 600 --csv \
    "$build/bench/speculative_bench" --sft-steps 1 --drafter-steps 1 --drafter-sequences 4 \
    --batch-sizes 1 --strategies "$strategy" --adaptive "" --min-requests 4 --new-tokens 64 \
    > "$out/ncu_$range.csv" 2> "$out/ncu_$range.log"
  python3 - "$out/ncu_$range.csv" "$range" <<'PY'
import csv, io, sys, collections
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
rows = list(csv.DictReader(io.StringIO("".join(lines))))
if not rows:
    print(f"{sys.argv[2]}: no kernels profiled (see the .log)"); sys.exit(0)
total, count = collections.Counter(), collections.Counter()
for r in rows:
    if r.get("Metric Name") != "gpu__time_duration.sum": continue
    name = r["Kernel Name"][:70]
    v = float(r["Metric Value"].replace(",", ""))
    unit = r.get("Metric Unit", "nsecond")
    us = v / 1000 if unit.startswith("n") else (v if unit.startswith("u") else v * 1000)
    total[name] += us; count[name] += 1
all_us = sum(total.values()); n = sum(count.values())
print(f"{sys.argv[2]}: {n} kernels, {all_us:.0f} us in all")
for name, us in total.most_common(14):
    print(f"  {us / count[name]:7.2f} us x {count[name]:4d} = {us:8.0f} us  {name}")
PY
done
