#!/usr/bin/env bash
# Runs the runtime benchmark: tlt, raw ZeroMQ (the floor) and CAF 0.17, one after another
# in one run on this machine, and prints one merged JSON summary with the target ratios.
# The three programs run ROUNDS times, interleaved (zmq, tlt, caf, zmq, ...), and every
# figure is the median over the rounds, so a burst of load from elsewhere on a shared
# machine hits all three alike and moves the medians little.
#
#   [ROUNDS=3] bench/run_runtime_bench.sh [BUILD_DIR]     (default BUILD_DIR: build)
#
# Build first, e.g.
#   cmake -S . -B build -G Ninja -DTLT_WITH_TORCH=OFF -DTLT_BUILD_TESTS=OFF
#   ninja -C build runtime_bench zmq_pingpong caf_pingpong
# Needs jq. About 25 s a round; each program prints one JSON object (stderr: logs).
set -euo pipefail

BUILD_DIR=${1:-build}
ROUNDS=${ROUNDS:-3}
BIN="$BUILD_DIR/bench"
for prog in runtime_bench zmq_pingpong; do
  [[ -x "$BIN/$prog" ]] || { echo "missing $BIN/$prog: build it first" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "jq is required" >&2; exit 1; }

run() {  # run NAME: the program's JSON object, or {} if it failed
  local json
  if json=$(timeout 120 "$BIN/$1" 2>"/tmp/tlt-bench-$1.log" | tail -n 1) && [[ -n "$json" ]]; then
    echo "$json"
  else
    echo "$1 failed; see /tmp/tlt-bench-$1.log" >&2
    echo '{}'
  fi
}

HAVE_CAF=1
if [[ ! -x "$BIN/caf_pingpong" ]]; then
  echo "caf_pingpong not built (CAF not found); CAF figures are null" >&2
  HAVE_CAF=0
fi
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
ROUND_FILE=$(mktemp)
trap 'rm -f "$ROUND_FILE"' EXIT
for ((round = 1; round <= ROUNDS; round++)); do
  echo "round $round/$ROUNDS" >&2
  ZMQ=$(run zmq_pingpong)
  TLT=$(run runtime_bench)
  CAF='{}'
  if ((HAVE_CAF)); then CAF=$(run caf_pingpong); fi
  jq -c -s add <(echo "$ZMQ") <(echo "$TLT") <(echo "$CAF") >>"$ROUND_FILE"
done

# Ratios are taken within each round (the three programs ran close together), then every
# figure, ratios included, is the median over the rounds.
jq -s --arg host "$(uname -n)" --argjson cores "$(nproc)" --argjson rounds "$ROUNDS" \
   --argjson load "$LOAD_BEFORE" '
  def median: sort | if length == 0 then null
                     elif length % 2 == 1 then .[(length - 1) / 2]
                     else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def ratio(a; b): if (a != null and b != null and b != 0) then a / b else null end;
  def with_ratios: . + {
    rtt_p50_ratio_tlt_over_zmq: ratio(.tlt_rtt_p50_us; .zmq_rtt_p50_us),
    rtt_p50_ratio_tlt_over_zmq_dealer: ratio(.tlt_rtt_p50_us; .zmq_dealer_rtt_p50_us),
    rtt_p50_ratio_tlt_over_caf: ratio(.tlt_rtt_p50_us; .caf_rtt_p50_us),
    calls_per_s_ratio_tlt_over_caf: ratio(.tlt_calls_per_s; .caf_calls_per_s),
    nn_calls_per_s_ratio_tlt_over_caf: ratio(.tlt_nn_calls_per_s; .caf_nn_calls_per_s),
    calls_per_s_ratio_tlt_over_zmq: ratio(.tlt_calls_per_s; .zmq_calls_per_s)
  };
  map(with_ratios) as $all
  | ([$all[] | keys[]] | unique) as $keys
  | reduce $keys[] as $k ({}; .[$k] = ([$all[] | .[$k] | select(. != null)] | median))
  | . + {host: $host, cores: $cores, rounds: $rounds, load_average_at_start: $load,
         window: 256}
  | . + {
    target_rtt_met: (if .rtt_p50_ratio_tlt_over_zmq == null then null
                     else .rtt_p50_ratio_tlt_over_zmq <= 1.5 end),
    target_throughput_met: (if .calls_per_s_ratio_tlt_over_caf == null then null
                            else .calls_per_s_ratio_tlt_over_caf >= 2.0 end)
  }' "$ROUND_FILE"
