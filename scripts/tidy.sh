#!/usr/bin/env bash
# clang-tidy with the repository's .clang-tidy over our sources (or the files given), using the
# build's compile_commands.json. Exit status 1 when it reports anything.
#   scripts/tidy.sh [FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
[ -f "$build/compile_commands.json" ] || { echo "error: $build/compile_commands.json missing: run scripts/setup.sh" >&2; exit 1; }
if [ $# -gt 0 ]; then
    files=("$@")
else
    mapfile -t files < <(git ls-files 'core/*.cpp' 'ui/*.cpp' 'app/*.cpp')
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
for f in "${files[@]}"; do
    clang-tidy -p "$build" --quiet "$f" >>"$out" 2>/dev/null || status=1
done
if grep -q "warning:\|error:" "$out"; then
    grep -A3 "warning:\|error:" "$out"
    exit 1
fi
exit $status
