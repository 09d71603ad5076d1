#!/usr/bin/env bash
# The main job on the built-in demo: sets up, then creates the demo project in out/demo
# (a synthetic cohort of 5 diagnoses run through the bundled demo ViT + SAE) and prints
# how to open it in the explorer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/app/cli/cytosae demo out/demo
echo "demo: open it with  build/app/gui/cytosae-explorer out/demo/demo.cyto"
