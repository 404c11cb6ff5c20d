#!/usr/bin/env bash
# Build, test and measure tlt on the GPU machine in one go (the device tool runs it from
# the repo root with .device carried; see ../shared/device/README.md):
#   bash scripts/gpu/check.sh [tests|fixtures|bench|models ...]    (default: tests fixtures)
# `models` builds only models_tests and engine_bench (faster) and runs models_tests on CUDA;
# `engine` runs only bench/gpu_engine.sh; `spec` builds the speculative targets, runs the
# speculative tests that exercise the fused kernels on CUDA (not the long statistical ones) and
# bench/gpu_speculative.sh (SPEC_BENCH_ARGS adds flags, e.g. "--batch-sizes 1,4,16"); `kernels`
# builds only bench/decode_kernels_bench (no LibTorch code: fast) and runs it with the speculative
# bench target's shapes (KERNEL_BENCH_ARGS replaces them), tree attention kernels side by side.
# Configures against PyTorch's CUDA LibTorch, builds with every core, runs ctest, makes the
# Hugging Face reference fixtures (tarred into $OUT/hf_fixtures.tar.gz) and, when asked,
# the GPU benchmarks. Logs land in $OUT (the device tool brings back 8 files at most).
set -uo pipefail
OUT=${OUT:-/tmp/tlt-gpu-out}
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(tests fixtures)
want() { [[ " ${steps[*]} " == *" $1 "* ]]; }
summary="$OUT/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }

bash .device/setup-deps.sh > "$OUT/setup.log" 2>&1 || { tail -20 "$OUT/setup.log"; exit 1; }
source /tmp/deps/env.sh
note "gpu: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
note "torch: $(python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available())')"

start=$(date +%s)
if ! cmake -S . -B /tmp/build -G Ninja -DCMAKE_BUILD_TYPE=Release > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; exit 1
fi
grep -E "^-- tlt:" "$OUT/build.log" | tee -a "$summary"
targets=()
if ! want tests; then
  want models && targets+=(models_tests engine_bench)
  want engine && targets+=(engine_bench decode_kernels_bench)
  want spec && targets+=(speculative_tests speculative_bench tlt)
  want kernels && targets+=(decode_kernels_bench)
  [ ${#targets[@]} -gt 0 ] && targets=(--target "${targets[@]}")
fi
if ! cmake --build /tmp/build -j "$(nproc)" "${targets[@]}" >> "$OUT/build.log" 2>&1; then
  grep -E "error|Error" "$OUT/build.log" | head -40; exit 1
fi
note "build: $(( $(date +%s) - start )) s"

if want fixtures && [ -f scripts/hf/make_fixtures.py ]; then
  rm -rf /tmp/hf && mkdir -p /tmp/hf
  if PYTHONUNBUFFERED=1 python3 scripts/hf/make_fixtures.py --out /tmp/hf > "$OUT/fixtures.log" 2>&1; then
    tar -czf "$OUT/hf_fixtures.tar.gz" -C /tmp/hf .
    note "fixtures: $(du -sh /tmp/hf | cut -f1) in hf_fixtures.tar.gz"
  else
    note "fixtures: FAILED (see fixtures.log)"; tail -20 "$OUT/fixtures.log"
  fi
fi

if want tests; then
  # 8 test processes share the cores: without a per-process thread cap every LibTorch test
  # starts one thread per core (8 x 16 threads), and the CPU-bound learning and statistical
  # tests then ran past the device call's 600 s limit (2026-11-28).
  (cd /tmp/build && OMP_NUM_THREADS=$(( $(nproc) / 8 > 0 ? $(nproc) / 8 : 1 )) TLT_TEST_DEVICE=cuda \
    ctest -j 8 --timeout 600 --output-on-failure > "$OUT/ctest.log" 2>&1)
  note "tests: $(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1)"
  grep -E "^\s+[0-9]+ - " "$OUT/ctest.log" | head -20 | tee -a "$summary"
fi

if want models; then
  TLT_TEST_DEVICE=cuda /tmp/build/tests/models/models_tests > "$OUT/models_tests.log" 2>&1
  note "models_tests: $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/models_tests.log" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \]|^\[  SKIPPED \]' "$OUT/models_tests.log" | head -20 | tee -a "$summary"
fi

if want engine; then  # only the engine benchmark (bench/gpu_engine.sh)
  note "== bench/gpu_engine.sh"
  bash bench/gpu_engine.sh /tmp/build "$OUT" 2>&1 | tail -30 | tee -a "$summary"
  note "== bench/decode_kernels_bench (batch 1, Qwen2-0.5B shapes; us per kernel inside a graph)"
  /tmp/build/bench/decode_kernels_bench 2>&1 | tee "$OUT/decode_kernels_bench.json" | tee -a "$summary"
fi

if want spec; then
  TLT_TEST_DEVICE=cuda timeout 240 /tmp/build/tests/speculative/speculative_tests \
    --gtest_filter='FusedVerify*:SpeculativeEngineTest.Greedy*:SpeculativeEngineTest.Oracle*:SpeculativeEngineTest.DrafterTraining*:AdaptiveEngineTest.Greedy*:AdaptiveEngineTest.Long*:AdaptiveEngineTest.Swaps*' \
    > "$OUT/speculative_tests.log" 2>&1
  note "speculative_tests: $(grep -E '^\[  (PASSED|FAILED)  \]' "$OUT/speculative_tests.log" | tr '\n' ' ')"
  grep -E -A4 'Failure|^\[  SKIPPED \]' "$OUT/speculative_tests.log" | head -40 | tee -a "$summary"
  note "== bench/gpu_speculative.sh ${SPEC_BENCH_ARGS:-}"
  # shellcheck disable=SC2086
  timeout 400 bash bench/gpu_speculative.sh /tmp/build "$OUT" ${SPEC_BENCH_ARGS:-} 2>&1 | tail -30 | tee -a "$summary"
fi

if want kernels; then  # per-kernel timings only (bench/decode_kernels_bench)
  note "== bench/decode_kernels_bench ${KERNEL_BENCH_ARGS:=--hidden 1024 --heads 16 --kv-heads 4 --intermediate 2816 --vocab 16}"
  # shellcheck disable=SC2086
  /tmp/build/bench/decode_kernels_bench $KERNEL_BENCH_ARGS 2>&1 | tee "$OUT/decode_kernels_bench.json" | tee -a "$summary"
fi

if want bench; then
  for b in bench/gpu_*.sh; do
    [ -f "$b" ] || continue
    note "== $b"
    bash "$b" /tmp/build "$OUT" 2>&1 | tail -30 | tee -a "$summary"
  done
fi
# The device tool brings back at most 8 files: logs and JSON results travel in one tarball.
(cd "$OUT" && ls *.log *.json > /dev/null 2>&1 && tar -czf results.tar.gz --remove-files ./*.log ./*.json 2>/dev/null)
cat "$summary"
