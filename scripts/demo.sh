#!/usr/bin/env bash
# The main job: train SimCLR on the embedded digits data, evaluate (kNN + linear probe next to
# raw-pixel baselines), export the plain-transformers encoder, write the model card, and print
# where everything is. Extra arguments are recipe overrides (e.g. train.epochs=10).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
exec .venv/bin/hfssl train recipes/simclr/digits.yaml --output-dir runs/simclr-digits --overwrite "$@"
