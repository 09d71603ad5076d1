#!/usr/bin/env bash
# GPU check (issue 17), for a machine with an NVIDIA GPU, a CUDA LibTorch and the packages of
# scripts/packages.txt (Qt for the tests, OpenCV): builds the CUDA preset without the GUI,
# runs the fp32 parity tests and the engine tests (which compare CUDA fp32 and bf16 with the
# CPU), and prints images/s at batch 8, 32 and 128 in one table. About 5-10 minutes.
#
#   scripts/gpu-check.sh                     # LibTorch from python3's torch
#   CYTOSAE_TORCH_DIR=/opt/libtorch/share/cmake/Torch scripts/gpu-check.sh
#
# Prints everything to stdout; the last table is what the README quotes.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU visible (nvidia-smi -L failed)" >&2
    exit 1
fi
nvidia-smi -L
if [ -z "${CYTOSAE_TORCH_DIR:-}" ]; then
    prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
    if [ -z "$prefix" ]; then
        echo "gpu-check: set CYTOSAE_TORCH_DIR to a CUDA LibTorch's share/cmake/Torch, or install PyTorch with CUDA" >&2
        exit 1
    fi
    export CYTOSAE_TORCH_DIR="$prefix/Torch"
fi
echo "LibTorch: $CYTOSAE_TORCH_DIR"

BUILD=${BUILD_DIR:-build-cuda}
start=$(date +%s)
cmake --preset cuda -B "$BUILD" -DCYTOSAE_BUILD_GUI=OFF -DCYTOSAE_BUILD_TESTS=ON -DCYTOSAE_BUILD_BENCH=ON
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target tst_modelparity tst_engine bench_engine cytosae
echo "build: $(( $(date +%s) - start )) s"

echo
echo "== parity (fp32, CPU) and engine tests (CUDA fp32 against the CPU, CUDA bf16 agreement)"
"$BUILD/tests/unit/tst_modelparity"
"$BUILD/tests/unit/tst_engine"
"$BUILD/app/cli/cytosae" --version

echo
echo "== images/s on the GPU: ViT-B/14 + SAE 768x49152 (random, calibrated), batch 8 / 32 / 128"
for b in 8 32 128; do
    "$BUILD/tests/bench/bench_engine" --device cuda --batch "$b" --batches 5 | sed -n '/on cuda/,$p'
done
echo "total: $(( $(date +%s) - start )) s"
