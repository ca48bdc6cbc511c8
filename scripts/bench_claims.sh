#!/usr/bin/env bash
# Issue 25's claims on Fashion-MNIST, one budget (300 steps x 256, the base ResNet; MAE its ViT), one report:
#   - calibration: ECE / NLL / Brier of the linear probe on each encoder's frozen features and of the classifier
#     fine-tuned from it on 1 % of the labels (600 steps x 32), against the supervised baseline (the same views,
#     backbone and budget trained with the labels) and a classifier trained from random weights;
#   - invariance: alignment, uniformity and each view operation's invariance score of the frozen features;
#   - the SimSiam control without stop-gradient (it should collapse: kNN, effective rank).
# Usage: bash scripts/bench_claims.sh [OUT]   (default runs/bench-claims); then BENCHMARKS.md's section quotes
# OUT/report/compare.md. Runs one process at a time under /tmp/hfssl-bench.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/bench-claims}"
python="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
shared=(train.max_steps=300 train.checkpoint_every=300 train.knn_every=null train.progress_bar=false
        eval.baselines=false 'eval.projections=[]' 'eval.linear.c_grid=[0.1]' 'eval.calibration.c_grid=[0.1]'
        'eval.finetune.label_fractions=[0.01]' eval.finetune.max_steps=600 eval.finetune.batch_size=32)
protocols='eval.protocols=[knn,linear,calibration,invariance,finetune]'
train() {  # NAME RECIPE [overrides...]
  local name="$1" recipe="$2"
  shift 2
  if [ -f "$out/$name/README.md" ]; then echo "== $name: done earlier"; return; fi
  echo "== $name: $recipe $*"
  /usr/bin/time -f "$name: %e s wall, %U+%S CPU s" flock /tmp/hfssl-bench.lock \
    "$python" -m hfssl.cli train "$recipe" --output-dir "$out/$name" --resume-or-start "${shared[@]}" "$@"
}
train simclr recipes/simclr/fashion_mnist.yaml "$protocols"
train byol recipes/byol/fashion_mnist.yaml "$protocols"
train mae recipes/mae/fashion_mnist.yaml "$protocols"
train supervised recipes/supervised/fashion_mnist.yaml "$protocols"
# the classifier trained from random weights on the same 1 % (the supervised-from-scratch row of the claim)
train simclr-finetune-random recipes/simclr/fashion_mnist.yaml 'eval.protocols=[finetune]' eval.finetune.init=random \
  train.max_steps=1  # the encoder's weights are not used: only its architecture
# SimSiam with and without stop-gradient (sec. 4.1 of the paper: without it the representation collapses)
train simsiam recipes/simsiam/fashion_mnist.yaml 'eval.protocols=[knn,linear]' train.monitor_every=25
train simsiam-no-stop-gradient recipes/simsiam/fashion_mnist_no_stop_gradient.yaml 'eval.protocols=[knn,linear]' \
  train.monitor_every=25
"$python" -m hfssl.cli compare "$out"/* --output "$out-report" --title "Issue 25's claims on Fashion-MNIST (300 steps)"
