#!/usr/bin/env bash
# Issue 21's evaluation protocols side by side on one SSL encoder trained on Fashion-MNIST: the linear probe,
# the MLP probe and the per-layer linear probe (one row per ResNet stage), full Fashion-MNIST (60,000 train /
# 10,000 test), one thread, default settings. Accuracy only: the protocols are seeded, the numbers do not
# depend on the load; time it on a quiet machine if a timing is wanted.
#
#   scripts/bench_probes.sh ENCODER_FOLDER OUT_DIR
#   scripts/bench_probes.sh /work/runs/bench21/simclr-fashion_mnist-1.5min/encoder runs/bench_probes
set -euo pipefail
encoder=${1:?usage: scripts/bench_probes.sh ENCODER_FOLDER OUT_DIR}
out=${2:?usage: scripts/bench_probes.sh ENCODER_FOLDER OUT_DIR}
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# One process, so the frozen features (and the per-layer features) are extracted once for the three protocols.
/usr/bin/time -v hfssl eval "$encoder" --dataset builtin:fashion_mnist --image-size 28 --no-baselines \
    --protocol linear --protocol mlp-probe --protocol layer-linear --output "$out/eval_results.json" \
    2> >(tee "$out/eval.log" >&2)
