#!/usr/bin/env python
"""Peak memory of one CLIP training step (forward + backward) with and without the gradient cache.

The model is a recipe's (``--recipe``, default recipes/clip/emoji.yaml: a ConvNeXt image tower on 32 px
images and a 2-layer BERT text tower, both trained) with ``model.loss`` and
``model.gradient_cache_chunk_size`` set from the command line; the towers are randomly initialised (a
pretrained tower's weights change no activation sizes, so nothing is loaded). The batch is random pixels
and random caption token ids of ``--text-length`` tokens, as many pairs as ``--batch-size``.

Each setting runs in its own process, so its peak resident set (``ru_maxrss``) is its own: the figure
reported is the peak during the step minus the resident set just before it (model, inputs and Python
already in memory), plus the step's seconds. The CPU allocator may keep freed pages, so these are upper
bounds on what the step needs; the ratio between settings is the point.

Usage::

    python scripts/bench_clip_gradient_cache.py --batch-size 512 --chunk-sizes none 64 --loss clip siglip
    python scripts/bench_clip_gradient_cache.py --recipe recipes/clip/emoji_locked_text_siglip.yaml ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def max_rss_mib() -> float:
    """Peak resident set of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_step(recipe_path: str, loss: str, chunk_size: int | None, batch_size: int, text_length: int) -> dict:
    """Build the model, make the batch, run one forward + backward; the memory figures of this process."""
    import torch
    import yaml

    from hfssl.models.clip import HfsslCLIPConfig, HfsslCLIPForPreTraining

    recipe = yaml.safe_load((REPO / recipe_path).read_text())
    config = HfsslCLIPConfig(**{**recipe["model"], "loss": loss, "gradient_cache_chunk_size": chunk_size})
    torch.manual_seed(0)
    model = HfsslCLIPForPreTraining(config).train()
    size = recipe["data"]["image_size"]
    generator = torch.Generator().manual_seed(0)
    batch = {"pixel_values": torch.randn(batch_size, 3, size, size, generator=generator),
             "input_ids": torch.randint(1000, 30000, (batch_size, text_length), generator=generator),
             "attention_mask": torch.ones(batch_size, text_length, dtype=torch.long)}
    before = max_rss_mib()
    start = time.perf_counter()
    model(**batch).loss.backward()
    seconds = time.perf_counter() - start
    peak = max_rss_mib()
    return {"recipe": recipe_path, "loss": loss, "chunk_size": chunk_size, "batch_size": batch_size,
            "rss_before_step_mib": round(before, 1), "peak_rss_mib": round(peak, 1),
            "step_peak_mib": round(peak - before, 1), "step_seconds": round(seconds, 2),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipes/clip/emoji.yaml")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--text-length", type=int, default=16)
    parser.add_argument("--chunk-sizes", nargs="+", default=["none", "64"], help="'none' = no gradient cache")
    parser.add_argument("--loss", nargs="+", default=["clip"], choices=["clip", "siglip"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one setting, in this process
        loss, chunk = args.child.split(":")
        print(json.dumps(one_step(args.recipe, loss, None if chunk == "none" else int(chunk), args.batch_size,
                                  args.text_length)))
        return
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for loss in args.loss:
        for chunk in args.chunk_sizes:
            command = [sys.executable, __file__, "--recipe", args.recipe, "--batch-size", str(args.batch_size),
                       "--text-length", str(args.text_length), "--child", f"{loss}:{chunk}"]
            completed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            print(completed.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
