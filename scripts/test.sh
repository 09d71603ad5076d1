#!/usr/bin/env bash
# Sets up, builds and runs every test (unit and GUI, offscreen).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd "${BUILD_DIR:-build}"
# One test at a time: the GUI test asserts the event loop stays responsive during a run.
QT_QPA_PLATFORM=offscreen ctest --output-on-failure
