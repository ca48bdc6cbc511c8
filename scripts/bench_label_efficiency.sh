#!/usr/bin/env bash
# Label efficiency on Fashion-MNIST (issue 24): SSL pre-training + fine-tuning + distillation.
#
# Phase 1: SimCLR and BYOL pre-training at a fixed ~3-minute budget (steps from the quiet machine's float32
# seconds per step in BENCHMARKS.md: SimCLR 0.117 s, BYOL 0.252 s), each followed by its run's own kNN,
# linear probe and fine-tuning at 1 % and 10 % of the labels (eval.finetune defaults: 5 epochs, batch 128,
# AdamW 1e-3, seed 0). Phase 2 (distillation) is run by scripts/bench_label_efficiency.py.
# Every run is float32 (train.mixed_precision=no: this CPU is AVX2 without native bf16) and under the
# benchmark lock. Usage: scripts/bench_label_efficiency.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/label-efficiency}
PY=${PYTHON:-python}
mkdir -p "$RUNS"
common=(train.mixed_precision=no train.knn_every=null train.progress_bar=false "eval.protocols=[knn,linear,finetune]"
        "eval.finetune.label_fractions=[0.01,0.1]")
for spec in simclr:1540 byol:714; do
  method=${spec%%:*}; steps=${spec##*:}
  /usr/bin/time -f "$method wall %e s, user %U s, sys %S s" \
    flock /tmp/hfssl-bench.lock "$PY" -m hfssl.cli train "recipes/$method/fashion_mnist.yaml" \
      --output-dir "$RUNS/$method" --overwrite train.max_steps="$steps" "${common[@]}" 2>&1 | tail -5
done
