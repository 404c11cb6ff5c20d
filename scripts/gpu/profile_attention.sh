#!/usr/bin/env bash
# Nsight Compute profile of the decode attention kernel on the GPU machine (device tool, repo
# root, .device carried): builds decode_kernels_bench only, runs it eagerly (TLT_BENCH_EAGER=1)
# under ncu and writes per-launch duration, throughput, occupancy and warp-stall sections to
# $OUT/ncu_attention.txt. Launch order: the batch-1 context-200 kernel, 24 layer-chain copies,
# then the sweep (rows 1 and 32 x contexts 64, 200, 1000, 4000, 8000).
set -uo pipefail
OUT=${OUT:-/tmp/tlt-gpu-out}
mkdir -p "$OUT"
bash .device/setup-deps.sh > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
source /tmp/deps/env.sh
cmake -S . -B /tmp/build -G Ninja -DCMAKE_BUILD_TYPE=Release > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
cmake --build /tmp/build -j "$(nproc)" --target decode_kernels_bench >> "$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -30; exit 1; }
NCU=${NCU:-/usr/local/cuda/bin/ncu}
TLT_BENCH_EAGER=1 "$NCU" -k regex:AttentionKernel ${NCU_LAUNCHES:---launch-skip 24 --launch-count 11} \
  --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
  --section SchedulerStats /tmp/build/bench/decode_kernels_bench > "$OUT/ncu_attention.txt" 2>&1
echo "ncu exit $?"
grep -E "AttentionKernel|Duration|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Block Limit|Memory Throughput|Stall" "$OUT/ncu_attention.txt" | head -150
