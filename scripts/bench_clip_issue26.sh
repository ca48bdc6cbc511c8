#!/usr/bin/env bash
# Issue 26's CLIP benchmark on builtin:emoji (held-out subcategories; Google art, and Twitter art as the shift):
# every row is a real run of a shipped recipe, one process at a time, each step of this script after the last.
#
#   bash scripts/bench_clip_issue26.sh OUT [STEP...]     # steps: minilm batch64 wiseft cache patches (default: all)
#
# minilm   the locked MiniLM text tower (recipes/clip/emoji_locked_text.yaml, mean-pooled as it was trained),
#          with CLIP's loss, with SigLIP's, and with the last 2 MiniLM layers unlocked at a tenth of the rate:
#          hfssl sweep, 40 epochs of 128 pairs each, zero-shot scored every 110 steps; report in OUT/minilm/report
# batch64  CLIP's and SigLIP's loss at batch 64 (40 epochs: 880 steps): OUT/batch64/report
# wiseft   the locked-MiniLM CLIP run fine-tuned end to end (text tower unlocked, train.init_from, 3 epochs at
#          1e-4), then hfssl wise-ft between the two (Google art: reference, Twitter art: shift): OUT/wise-ft
# cache    peak memory of one training step with and without the gradient cache (batch 512)
# patches  images/s of a ViT image tower's training step at patch_dropout 0, 0.5, 0.75
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bench_clip_issue26.sh OUT [STEP...]}"
shift
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(minilm batch64 wiseft cache patches)
python="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
common=(train.progress_bar=false "train.trackers=[tensorboard]" train.zero_shot_every=110)
mkdir -p "$out"
for step in "${steps[@]}"; do
  echo "== $step $(date -u +%H:%M:%S)"
  case "$step" in
    minilm)
      "$python" -m hfssl.cli sweep recipes/clip/emoji_locked_text.yaml "${common[@]}" \
        --variant clip --variant siglip model.loss=siglip \
        --variant unlock2 model.unlock_last_layers_text=2 optim.parameter_groups.unlocked_layers.lr_scale=0.1 \
        --output-dir "$out/minilm" ;;
    batch64)
      "$python" -m hfssl.cli sweep recipes/clip/emoji_locked_text.yaml "${common[@]}" train.batch_size=64 \
        train.zero_shot_every=220 --variant clip --variant siglip model.loss=siglip --output-dir "$out/batch64" ;;
    wiseft)
      "$python" -m hfssl.cli train recipes/clip/emoji_locked_text.yaml --output-dir "$out/finetuned" "${common[@]}" \
        train.init_from="$out/minilm/clip" model.lock_text_tower=false train.epochs=3 optim.lr=0.0001 \
        train.zero_shot_every=11 --resume-or-start
      "$python" -m hfssl.cli wise-ft "$out/minilm/clip" "$out/finetuned" --alpha 0,0.1,0.25,0.5,0.75,0.9,1 \
        --output "$out/wise-ft" ;;
    cache)
      "$python" scripts/bench_clip_gradient_cache.py --recipe recipes/clip/emoji_locked_text.yaml --batch-size 512 \
        --chunk-sizes none 128 64 --loss clip siglip | tee "$out/gradient_cache.jsonl" ;;
    patches)
      "$python" scripts/bench_patch_dropout.py --rounds 3 | tee "$out/patch_dropout.jsonl" ;;
    *) echo "unknown step $step (minilm batch64 wiseft cache patches)" >&2; exit 2 ;;
  esac
done
