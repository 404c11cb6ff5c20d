#!/usr/bin/env bash
# GPU benchmark of the models/ engine against transformers and the bandwidth floor.
#   bench/gpu_engine.sh BUILD_DIR OUT_DIR      (run by scripts/gpu/check.sh bench or engine)
# Runs the engine several ways (default: small-batch GEMVs for batches <= 4; --gemv 0: cuBLAS
# GEMMs at every batch size; --fused 0: eager Transformer::Forward; --tc-gemm 1 at batch 8 and
# 32: tensor-core GEMMs; TLT_PDL=0 at batch 1 and 8) and transformers; logs of
# all runs go to OUT_DIR/engine_bench.log. The table shows tokens/s and the wall time of one
# decode step (ms) side by side.
set -uo pipefail
build=$1; out=$2
log="$out/engine_bench.log"
"$build/bench/engine_bench" --out /tmp/qwen2-0.5b-random > "$out/engine_bench.json" 2> "$log" || { tail -5 "$log"; exit 1; }
"$build/bench/engine_bench" --out /tmp/qwen2-0.5b-random-cublas --gemv 0 > "$out/engine_bench_cublas.json" 2>> "$log" || { tail -5 "$log"; exit 1; }
"$build/bench/engine_bench" --out /tmp/qwen2-0.5b-random-eager --fused 0 > "$out/engine_bench_eager.json" 2>> "$log" || { tail -5 "$log"; exit 1; }
"$build/bench/engine_bench" --out /tmp/qwen2-0.5b-random-tc --tc-gemm 1 --batch-sizes 8,32 > "$out/engine_bench_tc.json" 2>> "$log" || { tail -5 "$log"; exit 1; }
TLT_PDL=0 "$build/bench/engine_bench" --out /tmp/qwen2-0.5b-random-nopdl --batch-sizes 1,8 > "$out/engine_bench_nopdl.json" 2>> "$log" || { tail -5 "$log"; exit 1; }
python3 bench/hf_generate_bench.py /tmp/qwen2-0.5b-random > "$out/hf_bench.json" 2>> "$log" || { tail -5 "$log"; exit 1; }
python3 - "$out/engine_bench.json" "$out/hf_bench.json" "$out/engine_bench_eager.json" "$out/engine_bench_cublas.json" "$out/engine_bench_nopdl.json" "$out/engine_bench_tc.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1])); h = json.load(open(sys.argv[2]))
g = json.load(open(sys.argv[3])); c = json.load(open(sys.argv[4])); npd = json.load(open(sys.argv[5]))
tc = json.load(open(sys.argv[6]))
print(f"fused decode: {e.get('fused_decode')}; engine: GEMVs for batches <= 4; cublas: --gemv 0; "
      "eager: --fused 0; ms: wall time of one decode step; gpu ms: its graph replay on the device (CUDA events)")
print(f"copy bandwidth {h['copy_bandwidth_gb_per_s']:.0f} GB/s, weights {e['weights_bytes']/1e9:.2f} GB")
print("batch  engine tok/s  (ms) (gpu ms)  cublas tok/s  (ms) (gpu ms)  eager tok/s  hf tok/s  floor tok/s  engine/hf  engine/floor")
for bs in (1, 8, 32, 128):
    k = f"bs{bs}"
    if f"engine_tokens_per_s_{k}" not in e: continue
    en, hf, fl = e[f"engine_tokens_per_s_{k}"], h[f"hf_tokens_per_s_{k}"], h[f"floor_tokens_per_s_{k}"]
    ea = g.get(f"engine_tokens_per_s_{k}", 0)
    cb = c.get(f"engine_tokens_per_s_{k}", 0)
    ems = e.get(f"decode_ms_per_step_{k}", 0); cms = c.get(f"decode_ms_per_step_{k}", 0)
    egpu = e.get(f"decode_device_ms_per_step_{k}", 0); cgpu = c.get(f"decode_device_ms_per_step_{k}", 0)
    print(f"{bs:5d}  {en:12.0f} {ems:5.2f} {egpu:8.3f}  {cb:12.0f} {cms:5.2f} {cgpu:8.3f}  {ea:11.0f}  {hf:8.0f}  {fl:11.0f}  {en/hf:9.2f}  {en/fl:12.2f}")
for bs in (8, 32):
    k = f"bs{bs}"
    if f"engine_tokens_per_s_{k}" in tc:
        print(f"--tc-gemm 1 (tensor-core GEMMs, gpu/skinny_gemm.h) bs{bs}: {tc[f'engine_tokens_per_s_{k}']:.0f} tok/s, "
              f"{tc.get(f'decode_ms_per_step_{k}', 0):.2f} ms, gpu {tc.get(f'decode_device_ms_per_step_{k}', 0):.3f} ms")
for bs in (1, 8):
    k = f"bs{bs}"
    if f"engine_tokens_per_s_{k}" in npd:
        print(f"TLT_PDL=0 (no dependent launch) bs{bs}: {npd[f'engine_tokens_per_s_{k}']:.0f} tok/s, "
              f"{npd.get(f'decode_ms_per_step_{k}', 0):.2f} ms, gpu {npd.get(f'decode_device_ms_per_step_{k}', 0):.3f} ms")
PY
