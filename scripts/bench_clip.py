#!/usr/bin/env python
"""CLIP benchmark on builtin:emoji (split by subcategory): three recipes and two baselines, one session.

Stages, each in its own process (so its CPU time and peak memory are its own):

* ``simclr``: SimCLR on the emoji training images (recipes/simclr/emoji.yaml): the LiT image tower;
* ``scratch``: CLIP with both towers from scratch (recipes/clip/emoji.yaml);
* ``lit``: LiT, the image tower locked to the SimCLR encoder (recipes/clip/emoji_lit.yaml);
* ``locked_text``: the text tower locked to all-MiniLM-L6-v2 (recipes/clip/emoji_locked_text.yaml);
* ``baselines``: a ridge map from raw pixels to frozen MiniLM embeddings of the captions, evaluated with
  the same zero-shot prompts and retrieval as the models, and a logistic-regression probe on raw pixels
  of the 9 categories (hfssl's linear probe: C chosen on a validation part of the training split).

Every CLIP run evaluates zero-shot on the Google test split and on the Twitter art of the same test
emoji (``builtin:emoji_twitter``, a style shift), and image-text retrieval. Lengths are fixed epoch
counts (not wall-clock budgets), so the quality numbers do not depend on the machine's load.
Training speed is images/s of the training loop alone (images per optimiser step x steps / seconds).

Usage (under the shared lock)::

    flock /tmp/hfssl-heavy.lock python scripts/bench_clip.py --output-dir runs/bench-clip
    python scripts/bench_clip.py --quick --output-dir /tmp/bench-clip-quick   # a few steps each: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("simclr", "scratch", "lit", "locked_text", "baselines")
RECIPES = {"simclr": "recipes/simclr/emoji.yaml", "scratch": "recipes/clip/emoji.yaml",
           "lit": "recipes/clip/emoji_lit.yaml", "locked_text": "recipes/clip/emoji_locked_text.yaml"}
COMMON = ["train.progress_bar=false", "train.trackers=[]", "train.knn_every=null"]


def run_stage_in_process(stage: str, output_dir: Path, overrides: list[str]) -> dict:
    """Train one recipe through hfssl.pipeline.run, timing the training loop alone."""
    from hfssl import pipeline
    from hfssl.recipe import load_recipe

    timing: dict[str, float] = {}
    original_train = pipeline.train

    def timed_train(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        result = original_train(*args, **kwargs)
        timing["train_seconds"] = time.perf_counter() - start
        return result

    pipeline.train = timed_train
    recipe = load_recipe(REPO / RECIPES[stage], [*COMMON, *overrides])
    result = pipeline.run(recipe, output_dir, overwrite=True)
    images = result.steps * recipe.train.batch_size * recipe.train.gradient_accumulation_steps
    results = json.loads((output_dir / "eval_results.json").read_text()) if (output_dir / "eval_results.json").is_file() else {}
    return {"stage": stage, "steps": result.steps, "final_loss": result.final_loss,
            "train_seconds": timing["train_seconds"], "images_per_second": images / timing["train_seconds"],
            "eval": results}


def baselines(quick: bool) -> dict:
    """Ridge pixels -> MiniLM caption embeddings, and the raw-pixel linear probe, on the same split."""
    import numpy as np
    import torch
    from sklearn.linear_model import RidgeCV
    from transformers import AutoModel, AutoTokenizer

    from hfssl.backbones import resolve_pretrained_path
    from hfssl.data.config import ImageTextDataConfig
    from hfssl.data.image_text import load_image_text_splits
    from hfssl.data.images import read_labels, read_pixels
    from hfssl.evaluation.image_text import retrieval_recalls, zero_shot_scores
    from hfssl.evaluation.linear_probe import linear_probe
    from hfssl.recipe import load_recipe

    recipe = load_recipe(REPO / RECIPES["scratch"])
    templates = recipe.eval.protocol_settings("zero-shot")["templates"]
    path = resolve_pretrained_path("builtin:all-MiniLM-L6-v2")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> np.ndarray:  # sentence-transformers' mean pooling + normalisation
        out = []
        for start in range(0, len(texts), 256):
            tokens = tokenizer(texts[start:start + 256], padding=True, truncation=True, return_tensors="pt")
            hidden = model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy())
        return np.concatenate(out)

    def normalise(array: np.ndarray) -> np.ndarray:
        return array / np.linalg.norm(array, axis=1, keepdims=True).clip(min=1e-12)

    rows = {}
    data = ImageTextDataConfig(source="builtin:emoji", text_column="caption", image_size=32)
    splits = load_image_text_splits(data)
    twitter = load_image_text_splits(ImageTextDataConfig(source="builtin:emoji_twitter", text_column="caption",
                                                         image_size=32))
    train_x = read_pixels(splits.train).reshape(len(splits.train), -1) / 255.0
    test_x = read_pixels(splits.test).reshape(len(splits.test), -1) / 255.0
    twitter_x = read_pixels(twitter.test).reshape(len(twitter.test), -1) / 255.0
    train_captions = list(splits.train.with_format(None)["text"])
    test_captions = list(splits.test.with_format(None)["text"])
    start = time.process_time()
    ridge = RidgeCV(alphas=(1.0, 10.0, 100.0, 1000.0)).fit(train_x, embed(train_captions))
    names = splits.label_names
    prompts = embed([template.format(name) for name in names for template in templates])
    classes = normalise(prompts.reshape(len(names), len(templates), -1).mean(axis=1))
    predicted = normalise(ridge.predict(test_x))
    rows["ridge"] = {"alpha": float(ridge.alpha_),
                     "zero_shot": zero_shot_scores(predicted, read_labels(splits.test), classes),
                     "zero_shot_twitter": zero_shot_scores(normalise(ridge.predict(twitter_x)),
                                                           read_labels(twitter.test), classes),
                     "retrieval": retrieval_recalls(predicted, test_captions, embed(test_captions), (1, 5, 10)),
                     "cpu_seconds": time.process_time() - start}
    start = time.process_time()
    probe = linear_probe(train_x.astype(np.float32), read_labels(splits.train), test_x.astype(np.float32),
                         read_labels(splits.test), (0.01, 0.1),
                         0.1, len(names))
    rows["linear_probe_raw_pixels"] = {**probe, "cpu_seconds": time.process_time() - start}
    return rows


def markdown(reports: list[dict]) -> str:
    """The BENCHMARKS.md table of a bench_clip.json."""
    def pct(value):  # noqa: ANN001, ANN202
        return "-" if value is None else f"{100 * value:.1f}"

    lines = ["| recipe | zero-shot top-1 (Google) | top-5 | zero-shot top-1 (Twitter art) | i2t R@1 | i2t R@5 | "
             "t2i R@1 | train images/s | peak RSS (MiB) | CPU s | wall s |", "|---|" + "---:|" * 10]
    for report in reports:
        if report["stage"] in ("baselines", "simclr"):
            continue
        rows = report["eval"].get("results", [])
        zero = next(row for row in rows if row["protocol"] == "zero-shot" and "dataset" not in row)
        twitter = next((row for row in rows if row["protocol"] == "zero-shot" and "dataset" in row), {})
        i2t = next(row for row in rows if row.get("direction") == "image-to-text")
        t2i = next(row for row in rows if row.get("direction") == "text-to-image")
        lines.append(f"| {report['stage']} | {pct(zero['top1'])} | {pct(zero['top5'])} | {pct(twitter.get('top1'))} | "
                     f"{pct(i2t['recall_at_1'])} | {pct(i2t['recall_at_5'])} | {pct(t2i['recall_at_1'])} | "
                     f"{report['images_per_second']:.0f} | {report['peak_rss_mib']:.0f} | {report['cpu_seconds']:.0f} | "
                     f"{report['wall_seconds']:.0f} |")
    for report in reports:
        if report["stage"] == "baselines":
            ridge, probe = report["baselines"]["ridge"], report["baselines"]["linear_probe_raw_pixels"]
            i2t = ridge["retrieval"][0]
            lines.append(f"| ridge: pixels -> MiniLM(caption) | {pct(ridge['zero_shot']['top1'])} | "
                         f"{pct(ridge['zero_shot']['top5'])} | {pct(ridge['zero_shot_twitter']['top1'])} | "
                         f"{pct(i2t['recall_at_1'])} | {pct(i2t['recall_at_5'])} | {pct(ridge['retrieval'][1]['recall_at_1'])} "
                         f"| - | {report['peak_rss_mib']:.0f} | {report['cpu_seconds']:.0f} | {report['wall_seconds']:.0f} |")
            lines.append(f"| linear probe, raw pixels (9 categories, supervised) | {pct(probe['top1'])} | "
                         f"{pct(probe['top5'])} | - | - | - | - | - | - | - | - |")
    return "\n".join(lines)


def stage_overrides(stage: str, args: argparse.Namespace, output_dir: Path) -> list[str]:
    overrides = []
    if args.quick:
        overrides += ["train.max_steps=3", "eval.max_test_samples=64"]
    else:
        overrides += [f"train.epochs={args.simclr_epochs if stage == 'simclr' else args.clip_epochs}"]
    if stage == "simclr":  # the image tower only: kNN on its features, no probes (the baselines stage has them)
        overrides += ["eval.protocols=[knn]", "eval.baselines=false"]
    if stage == "lit":
        overrides.append(f"model.vision_name_or_path={output_dir / 'simclr' / 'encoder'}")
    return overrides + list(args.override)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=REPO / "runs" / "bench-clip")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--clip-epochs", type=int, default=15)
    parser.add_argument("--simclr-epochs", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="3 steps per run: a smoke test of the script")
    parser.add_argument("--override", action="append", default=[], help="recipe override for every CLIP stage")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # child mode: run one stage, print JSON
    parser.add_argument("--table", type=Path, help="print the Markdown table of a bench_clip.json and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.stage:
        if args.stage == "baselines":
            report = {"stage": "baselines", "baselines": baselines(args.quick)}
        else:
            report = run_stage_in_process(args.stage, args.output_dir / args.stage,
                                          stage_overrides(args.stage, args, args.output_dir))
        import resource

        report.update(cpu_seconds=time.process_time(),
                      peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print("BENCH_JSON " + json.dumps(report))
        return 0
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    reports = []
    print(f"load before: {os.getloadavg()}, cores: {os.cpu_count()}", flush=True)
    for stage in args.stages:
        command = [sys.executable, __file__, "--stage", stage, "--output-dir", str(args.output_dir),
                   "--clip-epochs", str(args.clip_epochs), "--simclr-epochs", str(args.simclr_epochs),
                   *(["--quick"] if args.quick else []), *[f"--override={value}" for value in args.override]]
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        stdout, stderr = process.communicate()
        wall = time.perf_counter() - start
        if process.returncode != 0:
            sys.stderr.write(stderr[-5000:])
            raise SystemExit(f"stage {stage} failed ({process.returncode})")
        line = next(line for line in stdout.splitlines() if line.startswith("BENCH_JSON "))
        report = json.loads(line[len("BENCH_JSON "):])
        report.update(wall_seconds=wall, load_after=os.getloadavg())
        reports.append(report)
        print(f"{stage}: {wall:.0f} s wall, load {os.getloadavg()}", flush=True)
        (args.output_dir / "bench_clip.json").write_text(json.dumps(reports, indent=2) + "\n")
    print(f"load after: {os.getloadavg()}")
    print(json.dumps(reports, indent=1)[:20000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
