#!/usr/bin/env bash
# Sets up, builds and runs every test (unit and GUI, offscreen).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd "${BUILD_DIR:-build}"
QT_QPA_PLATFORM=offscreen ctest --output-on-failure -j 2
