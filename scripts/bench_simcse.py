"""hfssl SimCSE against sentence-transformers' own unsupervised SimCSE training, side by side.

Both sides continue training all-MiniLM-L6-v2 (``builtin:all-MiniLM-L6-v2``) with the unsupervised SimCSE objective
on the same sentences (the sentences of the Wikipedia and BBC documents of ``builtin:english_corpus``, one document
in 100 held out as hfssl holds it out, written once to a JSON file both sides read), with the same batch size,
steps, sequence length (32), temperature (0.05 = sentence-transformers' scale 20), AdamW learning rate, no weight
decay, no warm-up and a linear decay, in float32, each in its own process with 2 threads:

* ``hfssl``: ``hfssl.training.trainer.train`` with the ``simcse`` method (one encoder pass over the batch twice:
  2B rows; duplicate texts masked in the loss);
* ``sentence-transformers``: ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss`` on ``(s, s)`` pairs
  with the ``NO_DUPLICATES`` batch sampler (its documented unsupervised-SimCSE recipe).

Speed: sentences/s over the steps after the first (data preparation, model loading and the first step are not
counted), with the process's CPU seconds over the same steps (CPU s / wall s = cores used); and, after training,
each side's bare forward + backward of its model on one fixed batch (median of 7), the floor under a step. Quality: the same
hfssl evaluation functions on each side's saved encoder and on the MiniLM start: ``text-knn`` (k=20, T=0.07) and
``text-linear`` (mean pooling) on BBC News and Wikipedia topics (stratified cap of ``--max-documents`` each,
70/30), with TF-IDF next to them, and ``alignment-uniformity`` on held-out sentences.

Usage (about 10 minutes with the defaults on 2 CPU cores; run under the benchmark lock)::

    flock /tmp/hfssl-bench.lock python scripts/bench_simcse.py --steps 80 --max-documents 1000 --out runs/bench_simcse
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import StepTimer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SIDES = ("hfssl", "sentence-transformers")
START = "builtin:all-MiniLM-L6-v2"


def step_record(timer: StepTimer, batch_size: int) -> dict[str, float]:
    return {"timed_steps": timer.timed_steps, "wall_seconds": timer.seconds, "cpu_seconds": timer.cpu_seconds,
            "cores": timer.cores, "sentences_per_second": timer.per_second(batch_size),
            "median_step_seconds": timer.median_step_seconds}


def probe_sentences(path: Path, count: int) -> list[str]:
    """The first ``count`` sentences of the file: one fixed batch for the bare-step timing."""
    with path.open() as handle:
        return [json.loads(next(handle))["text"] for _ in range(count)]


def bare_step_seconds(step: Any, repeats: int = 7) -> float:
    """Median seconds of ``step()`` (the model's forward and backward on one fixed batch, no loader, no optimiser):
    what a step costs before any toolkit overhead."""
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def write_sentences(path: Path) -> int:
    """The training sentences: Wikipedia and BBC documents less hfssl's held-out ones, split into sentences."""
    from hfssl.data.text import split_sentences
    from hfssl.data.text_corpus import load_english_corpus
    from hfssl.data.token_rows import HOLDOUT_EVERY

    corpus = load_english_corpus(("wikipedia", "bbc_news"))
    sentences = [sentence for index, text in enumerate(corpus["text"]) if index % HOLDOUT_EVERY != HOLDOUT_EVERY - 1
                 for sentence in split_sentences(text)]
    path.write_text("\n".join(json.dumps({"text": sentence}) for sentence in sentences) + "\n")
    return len(sentences)


def run_hfssl(args: argparse.Namespace, out: Path, sentences: Path) -> dict[str, Any]:
    from hfssl.recipe import recipe_from_dict
    from hfssl.training.trainer import train

    recipe = recipe_from_dict({
        "method": "simcse",
        "model": {"backbone_name_or_path": START, "max_seq_length": 32, "temperature": 0.05, "pooling": "mean",
                  "gradient_cache_chunk_size": args.chunk_size},
        # hfssl holds out 1 row in 100 of the file again: the JSON rows are already training sentences, so the
        # other side reads the same rows (run_sentence_transformers drops the same ones).
        "data": {"source": str(sentences), "eval_split": None},
        "optim": {"name": "adamw", "lr": args.lr, "weight_decay": 0.0, "warmup_steps": 0, "schedule": "linear"},
        "train": {"batch_size": args.batch_size, "max_steps": args.steps, "checkpoint_every": 100000,
                  "progress_bar": False, "trackers": [], "mixed_precision": "no", "log_every": 1000},
        "eval": {"protocols": []},
    })
    timer = StepTimer()
    result = train(recipe, out / "hfssl", callbacks=[timer])
    from hfssl.export import ExportContext

    result.model.eval()
    from hfssl.models.simcse.export import export_sentence_encoder

    export_sentence_encoder(result.model, out / "hfssl" / "encoder", ExportContext(recipe, out / "hfssl"))
    tokenizer = result.model.get_tokenizer(out / "hfssl")
    batch = tokenizer(probe_sentences(sentences, args.batch_size), padding=True, truncation=True, max_length=32,
                      return_tensors="pt", return_token_type_ids=False)
    model = result.model.train()

    def step() -> None:
        model(**batch, dropout_seed=0).loss.backward()
        model.zero_grad(set_to_none=True)

    return {**step_record(timer, args.batch_size), "final_loss": result.final_loss, "model": str(out / "hfssl" / "encoder"),
            "bare_step_seconds": bare_step_seconds(step)}


def run_sentence_transformers(args: argparse.Namespace, out: Path, sentences: Path) -> dict[str, Any]:
    import datasets
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers
    from transformers import TrainerCallback

    from hfssl.backbones import resolve_pretrained_path
    from hfssl.data.token_rows import HOLDOUT_EVERY

    rows = datasets.load_dataset("json", data_files=str(sentences), split="train")
    rows = rows.select([index for index in range(len(rows)) if index % HOLDOUT_EVERY != HOLDOUT_EVERY - 1])
    rows = rows.map(lambda row: {"anchor": row["text"], "positive": row["text"]}, remove_columns=["text"])
    model = SentenceTransformer(resolve_pretrained_path(START), device="cpu")
    model.max_seq_length = 32
    # all-MiniLM-L6-v2 ends with a Normalize module; SimCSE (and the hfssl side) trains the mean-pooled embedding,
    # and MNRL's cosine similarity is the same with or without it.
    timer = StepTimer()

    class Callback(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            timer.tick()

    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "st-trainer"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, weight_decay=0.0, warmup_steps=0, lr_scheduler_type="linear", seed=0,
        batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", report_to=[], logging_steps=1000,
        use_cpu=True, bf16=False, fp16=False, dataloader_drop_last=True, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=rows,
                                         loss=MultipleNegativesRankingLoss(model, scale=1 / 0.05),
                                         callbacks=[Callback()])
    output = trainer.train()
    model.save(str(out / "sentence-transformers"))
    loss = MultipleNegativesRankingLoss(model, scale=1 / 0.05)
    texts = probe_sentences(sentences, args.batch_size)
    model.train()

    def step() -> None:
        features = [model.tokenize(texts), model.tokenize(texts)]
        loss(features, None).backward()
        model.zero_grad(set_to_none=True)

    return {**step_record(timer, args.batch_size), "final_loss": output.training_loss,
            "model": str(out / "sentence-transformers"), "bare_step_seconds": bare_step_seconds(step)}


def run_side(side: str, args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    runner = run_hfssl if side == "hfssl" else run_sentence_transformers
    result = {"side": side, "threads": torch.get_num_threads(),
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), **runner(args, out, out / "sentences.json")}
    (out / f"{side}.json").write_text(json.dumps(result, indent=2))


def evaluate(args: argparse.Namespace, name: str, path: str) -> dict[str, Any]:
    """text-knn, text-linear (mean pooling) and alignment-uniformity of one encoder, by hfssl's functions."""
    import torch

    from hfssl.data.config import TextDataConfig
    from hfssl.data.token_rows import held_out_texts
    from hfssl.evaluation.sentence_embeddings import alignment_uniformity_rows, text_knn_rows
    from hfssl.evaluation.text import load_text_model, text_classification_rows

    torch.set_num_threads(args.threads)
    model = load_text_model(path=path)
    sets = ("builtin:bbc_news", "builtin:wikipedia_topics")
    knn = text_knn_rows(model, sets, ("mean",), 128, args.max_documents, 0.3, (20,), 0.07, 64, True)
    linear = text_classification_rows(model, sets, ("mean",), 128, args.max_documents, 0.3,
                                      (0.01, 0.1, 1.0, 10.0), 0.1, 64, True)
    documents, _ = held_out_texts(TextDataConfig(source="builtin:english_corpus", eval_split=None))
    geometry = alignment_uniformity_rows(model, documents, ("mean",), 64, 2000, 64, 2.0, 2.0)
    return {"name": name, "text-knn": knn, "text-linear": linear, "alignment-uniformity": geometry}


def table(results: dict[str, Any], quality: list[dict[str, Any]]) -> str:
    lines = ["| side | sentences/s | median step (s) | bare forward + backward (s) | CPU s / wall s | final loss |",
             "|---|---:|---:|---:|---:|---:|"]
    for side in SIDES:
        r = results[side]
        lines.append(f"| {side} | {r['sentences_per_second']:.1f} | {r['median_step_seconds']:.3f} | "
                     f"{r['bare_step_seconds']:.3f} | {r['cpu_seconds']:.0f} / {r['wall_seconds']:.0f} = {r['cores']:.2f} | "
                     f"{r['final_loss']:.4f} |")
    ratio = results["hfssl"]["sentences_per_second"] / results["sentence-transformers"]["sentences_per_second"]
    lines += ["", f"hfssl / sentence-transformers sentences/s: {ratio:.2f}x", "",
              "| encoder | kNN BBC | kNN Wikipedia | linear BBC | linear Wikipedia | alignment | uniformity |",
              "|---|---:|---:|---:|---:|---:|---:|"]

    def pick(rows: list[dict[str, Any]], dataset: str, features: str = "model") -> float:
        return next(row["top1"] for row in rows if row["dataset"] == dataset and row["features"] == features)

    for entry in quality:
        g = entry["alignment-uniformity"][0]
        lines.append(f"| {entry['name']} | {100 * pick(entry['text-knn'], 'builtin:bbc_news'):.1f} | "
                     f"{100 * pick(entry['text-knn'], 'builtin:wikipedia_topics'):.1f} | "
                     f"{100 * pick(entry['text-linear'], 'builtin:bbc_news'):.1f} | "
                     f"{100 * pick(entry['text-linear'], 'builtin:wikipedia_topics'):.1f} | "
                     f"{g['alignment']:.3f} | {g['uniformity']:.3f} |")
    first = quality[0]
    lines.append(f"| TF-IDF | {100 * pick(first['text-knn'], 'builtin:bbc_news', 'tfidf'):.1f} | "
                 f"{100 * pick(first['text-knn'], 'builtin:wikipedia_topics', 'tfidf'):.1f} | "
                 f"{100 * pick(first['text-linear'], 'builtin:bbc_news', 'tfidf'):.1f} | "
                 f"{100 * pick(first['text-linear'], 'builtin:wikipedia_topics', 'tfidf'):.1f} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--chunk-size", type=int, default=None, help="hfssl's gradient cache chunk (rows); off by default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-documents", type=int, default=1500)
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--out", default="runs/bench_simcse")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--evaluate", nargs=2, metavar=("NAME", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.side:
        run_side(args.side, args)
        return
    if args.evaluate:
        result = evaluate(args, *args.evaluate)
        (out / f"quality-{args.evaluate[0]}.json").write_text(json.dumps(result, indent=2))
        return
    out.mkdir(parents=True, exist_ok=True)
    print(f"{write_sentences(out / 'sentences.json')} training sentences", flush=True)
    forwarded = [arg for arg in sys.argv[1:]]
    for side in args.sides.split(","):
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, *forwarded, "--side", side], check=True)
        print(f"{side}: {time.perf_counter() - start:.0f} s wall", flush=True)
    results = {side: json.loads((out / f"{side}.json").read_text()) for side in SIDES if (out / f"{side}.json").exists()}
    quality = []
    if not args.skip_eval:
        for name, path in (("MiniLM start", START), ("hfssl SimCSE", results["hfssl"]["model"]),
                           ("sentence-transformers SimCSE", results["sentence-transformers"]["model"])):
            start = time.perf_counter()
            subprocess.run([sys.executable, __file__, *forwarded, "--evaluate", name, path], check=True)
            print(f"evaluate {name}: {time.perf_counter() - start:.0f} s wall", flush=True)
            quality.append(json.loads((out / f"quality-{name}.json").read_text()))
    report = table(results, quality) if quality else json.dumps(results, indent=2)
    (out / "report.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
