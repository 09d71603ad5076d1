#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time
# (FUZZ_SECONDS, default 60) on seed corpora made from the test data. A crash stops the
# script and leaves the input as build-fuzz/crash-* (add it to a regression test, fix, rerun).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
SECONDS_EACH=${FUZZ_SECONDS:-60}
BUILD=build-fuzz
CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCYTOSAE_FUZZ=ON \
    -DCYTOSAE_BUILD_GUI=OFF -DCYTOSAE_BUILD_TESTS=OFF -DCYTOSAE_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD" -j "${JOBS:-2}" --target fuzz_pickle fuzz_image fuzz_csv fuzz_blobs fuzz_json

# Seed corpora: the pickles inside the fixture checkpoints, the fixture images, sample CSVs.
CORPUS="$BUILD/corpus"
mkdir -p "$CORPUS"/{pickle,image,csv,blobs,json}
python3 - "$CORPUS/pickle" tests/data/fixtures/*.pt* <<'PY'
import sys, zipfile, os
out = sys.argv[1]
for i, path in enumerate(sys.argv[2:]):
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith("data.pkl"):
                open(os.path.join(out, f"seed{i}.pkl"), "wb").write(z.read(name))
PY
cp tests/data/fixtures/images/*.png "$CORPUS/image/"
cp tests/fuzz/corpus/csv/* "$CORPUS/csv/"
cp tests/fuzz/corpus/json/* "$CORPUS/json/"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
for target in pickle image csv blobs json; do
    echo "== fuzz_$target for ${SECONDS_EACH}s"
    (cd "$BUILD" && ./tests/fuzz/fuzz_$target -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 "corpus/$target")
done
echo "fuzz: no crashes"
