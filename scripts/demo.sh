#!/usr/bin/env bash
# The main job on built-in demo data: sets up, then embeds the project's own test images
# with the DinoBloom-format ViT and CytoSAE-format SAE fixtures, printing each image's
# strongest concepts and writing out/demo.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
F=tests/data/fixtures
mkdir -p out
build/app/cli/cytosae embed --vit $F/tiny_dinobloom.pth \
    --sae $F/final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt \
    --top 8 --json out/demo.json $F/images/*.png
echo "demo: wrote out/demo.json"
