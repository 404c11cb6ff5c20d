#!/usr/bin/env bash
# Installs every Debian 12 package tlt builds, tests and benchmarks with. Idempotent:
# packages already present are skipped, so a second run does nothing and exits 0.
#   scripts/install-deps.sh            # build + test dependencies
#   scripts/install-deps.sh --bench    # also CAF (libcaf-dev) for the runtime benchmark
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libzmq3-dev cppzmq-dev
  libcapnp-dev capnproto
  libgoogle-glog-dev libgflags-dev
  libboost1.74-dev
  nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libtorch-dev
  libncurses-dev zlib1g-dev jq
)
if [[ "${1:-}" == "--bench" ]]; then packages+=(libcaf-dev); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
