#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (our code is
# instrumented; LibTorch, Qt and OpenCV are not). Any report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
BUILD=build-asan
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCYTOSAE_SANITIZE=ON -DCYTOSAE_BUILD_BENCH=OFF
cmake --build "$BUILD" -j "${JOBS:-2}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Leaks inside uninstrumented libraries we do not own (allocated once per process).
export LSAN_OPTIONS="suppressions=$(pwd)/scripts/lsan.supp:print_suppressions=0"
cd "$BUILD"
QT_QPA_PLATFORM=offscreen ctest --output-on-failure
