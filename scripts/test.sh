#!/usr/bin/env bash
# Sets up (Debian packages), builds and runs every test with ctest. Exit code: ctest's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build=${TLT_BUILD_DIR:-$root/build}
cd "$build"
jobs=${TLT_TEST_JOBS:-2}
# Each LibTorch test process would start one thread per core; with `jobs` tests at once that
# oversubscribes the cores (OpenMP threads spin), so each gets its share unless set already.
cores=$(nproc)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores / jobs > 0 ? cores / jobs : 1 ))}
ctest --output-on-failure --timeout 900 -j "$jobs"
