#!/usr/bin/env bash
# One-step set-up on a fresh Debian 12 / Ubuntu machine: installs every package the project
# needs, then configures and builds (Release) into build/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t packages < <(grep -v '^#' scripts/packages.txt | tr ' ' '\n' | sed '/^$/d')
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-Release} ${CYTOSAE_CMAKE_ARGS:-}
# Two jobs: LibTorch translation units need ~2 GB of memory each.
cmake --build "$BUILD_DIR" -j "${JOBS:-2}"
