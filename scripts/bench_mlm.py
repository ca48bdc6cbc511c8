"""hfssl masked language modelling against the standard transformers route, side by side.

Three sides train the identical BERT (config, sequence length, batch, AdamW with the same learning
rate, weight decay, warm-up and linear decay, gradient clipping, SDPA attention, fp32) on
``builtin:english_corpus`` with the same WordPiece tokenizer (trained by hfssl on the training
documents), each in its own process:

* ``hfssl``: ``hfssl.training.trainer.train`` on grouped rows (documents packed, ``[SEP]`` between
  them), masks drawn on the device, the output layer evaluated at the masked positions only;
* ``hf-grouped``: transformers' ``Trainer`` + ``DataCollatorForLanguageModeling`` on rows made as the
  ``run_mlm`` example's ``group_texts`` makes them (each document tokenised with its special tokens,
  concatenated, cut into blocks, the remainder dropped);
* ``hf-line-by-line``: the same with ``--line_by_line`` (one truncated row per document, padded
  per batch by the collator).

All sides see the same number of real (non-padding) tokens: grouped sides run ``--steps`` steps,
the line-by-line side as many steps as its shorter rows need for the same tokens. Tokens/s is
measured over the training steps after the first one (data preparation and the first step are
not counted); real tokens per step are the batch size times the mean real row length of the side's
rows. Peak memory is the process's maximum resident set size. The held-out masked-token accuracy
(``hfssl.evaluation.text.masked_token_accuracy``: the held-out documents, packed into rows of the
same length, fixed BERT masks) is measured on each side's saved model by the same function.

Usage (about 3 minutes a side with the defaults on 2 CPU cores)::

    python scripts/bench_mlm.py --steps 150 --out runs/bench_mlm
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
from typing import Any

from bench_common import StepTimer, interleaved_medians, train_language_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SIDES = ("hfssl", "hf-grouped", "hf-line-by-line")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"bert_config": args.bert, "vocab_size": args.vocab_size, "max_seq_length": args.seq_length,
            "batch_size": args.batch_size, "lr": args.lr, "weight_decay": 0.01, "warmup_steps": max(1, args.steps // 10),
            "max_grad_norm": 1.0, "seed": 0}


def hfssl_recipe(args: argparse.Namespace, steps: int) -> Any:
    from hfssl.recipe import recipe_from_dict

    s = settings(args)
    return recipe_from_dict({
        "method": "mlm",
        "model": {"bert_config": s["bert_config"], "vocab_size": s["vocab_size"], "max_seq_length": s["max_seq_length"]},
        "data": {"source": "builtin:english_corpus", "text_column": "text", "eval_split": None,
                 "max_train_samples": args.max_documents},
        "optim": {"name": "adamw", "lr": s["lr"], "weight_decay": s["weight_decay"], "warmup_steps": s["warmup_steps"],
                  "schedule": "linear", "max_grad_norm": s["max_grad_norm"], "betas": [0.9, 0.999], "eps": 1e-8},
        "train": {"batch_size": s["batch_size"], "max_steps": steps, "checkpoint_every": 10**9, "log_every": 10**9,
                  "trackers": [], "progress_bar": False, "seed": s["seed"]},
        "eval": {"protocols": []},
    })


def shared_data(args: argparse.Namespace) -> tuple[Any, Any, list[str]]:
    """The training documents, the tokenizer (hfssl's cached WordPiece) and the held-out texts."""
    from hfssl.models.mlm.configuration_mlm import MLMConfig
    from hfssl.models.mlm.data import cached_wordpiece, held_out_texts, training_documents

    recipe = hfssl_recipe(args, 1)
    train_documents, column = training_documents(recipe)
    tokenizer = cached_wordpiece(train_documents, column, recipe.data, MLMConfig(**recipe.model))
    held_out, _ = held_out_texts(recipe.data)
    return train_documents, tokenizer, held_out


def run_hfssl(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    shared_data(args)  # the same cached tokenizer as the other side(s)
    return train_language_model(hfssl_recipe(args, args.steps), out, "mlm")


def hf_rows(args: argparse.Namespace, tokenizer: Any, documents: Any, line_by_line: bool) -> Any:
    """Rows exactly as transformers' run_mlm example builds them."""
    length = args.seq_length
    if line_by_line:
        def tokenize(batch: dict[str, list]) -> dict[str, list]:
            texts = [line for line in batch["text"] if len(line) > 0 and not line.isspace()]
            return tokenizer(texts, padding=False, truncation=True, max_length=length, return_special_tokens_mask=True)

        return documents.map(tokenize, batched=True, remove_columns=documents.column_names)

    def tokenize_all(batch: dict[str, list]) -> dict[str, list]:
        return tokenizer(batch["text"], return_special_tokens_mask=True)

    def group_texts(examples: dict[str, list]) -> dict[str, list]:
        concatenated = {key: sum(examples[key], []) for key in examples}
        total = (len(concatenated[next(iter(examples))]) // length) * length
        return {key: [values[i: i + length] for i in range(0, total, length)] for key, values in concatenated.items()}

    tokenized = documents.map(tokenize_all, batched=True, remove_columns=documents.column_names)
    return tokenized.map(group_texts, batched=True, batch_size=1000)


def run_hf(args: argparse.Namespace, out: Path, line_by_line: bool) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from hfssl.models.mlm.configuration_mlm import BERT_PRESETS

    documents, tokenizer, _ = shared_data(args)
    rows = hf_rows(args, tokenizer, documents, line_by_line)
    row_tokens = float(np.mean([len(ids) for ids in rows["input_ids"]]))
    steps = args.steps if not line_by_line else int(round(args.steps * args.seq_length / row_tokens))
    s = settings(args)
    set_seed(s["seed"])
    config = BertConfig(**BERT_PRESETS[s["bert_config"]], vocab_size=len(tokenizer),
                        max_position_embeddings=max(512, args.seq_length), pad_token_id=tokenizer.pad_token_id)
    model = BertForMaskedLM._from_config(config, attn_implementation="sdpa")
    timer = StepTimer()

    class Callback(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            timer.tick()

    training_args = TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=s["batch_size"], max_steps=steps,
        learning_rate=s["lr"], weight_decay=s["weight_decay"], warmup_steps=s["warmup_steps"],
        lr_scheduler_type="linear", max_grad_norm=s["max_grad_norm"], adam_beta1=0.9, adam_beta2=0.999,
        adam_epsilon=1e-8, logging_steps=10**9, save_strategy="no", report_to="none", seed=s["seed"],
        dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15)
    trainer = Trainer(model=model, args=training_args, train_dataset=rows, data_collator=collator,
                      callbacks=[Callback()])
    output = trainer.train()
    model.save_pretrained(out / "encoder")
    tokenizer.save_pretrained(out / "encoder")
    return {"timer": timer, "row_tokens": row_tokens, "rows": len(rows), "final_loss": output.training_loss}


def run_side(side: str, args: argparse.Namespace) -> None:
    import torch

    out = Path(args.out) / side
    out.mkdir(parents=True, exist_ok=True)
    cpu_start = time.process_time()
    if side == "hfssl":
        result = run_hfssl(args, out)
    else:
        result = run_hf(args, out, line_by_line=side == "hf-line-by-line")
    timer = result.pop("timer")
    tokens_per_step = args.batch_size * result["row_tokens"]
    report = {
        "side": side, "steps": timer.steps, "timed_steps": timer.timed_steps, "timed_seconds": timer.seconds,
        "tokens_per_step": tokens_per_step, "total_tokens": tokens_per_step * timer.steps,
        "tokens_per_second": timer.per_second(tokens_per_step),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_seconds": time.process_time() - cpu_start, "threads": torch.get_num_threads(), **result,
    }
    (out / "train.json").write_text(json.dumps(report, indent=2) + "\n")


def evaluate_sides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from hfssl.evaluation.text import load_text_model, masked_token_accuracy

    _, _, held_out = shared_data(args)
    results = {}
    for side in SIDES:
        folder = Path(args.out) / side
        if not (folder / "train.json").is_file():
            continue
        report = json.loads((folder / "train.json").read_text())
        text_model = load_text_model(path=str(folder / "encoder"))
        report["heldout"] = masked_token_accuracy(text_model, held_out, args.seq_length, 32, seed=0)
        results[side] = report
    return results


def model_step(args: argparse.Namespace, rounds: int) -> dict[str, Any]:
    """Forward + backward of one batch, hfssl's model against ``BertForMaskedLM``, interleaved in one
    process (round after round, so that the load of a shared machine hits both alike): median seconds."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from hfssl.models.mlm import MLMConfig, MLMForPreTraining
    from hfssl.models.mlm.configuration_mlm import BERT_PRESETS
    from hfssl.data.token_masking import mask_tokens

    torch.manual_seed(0)
    ours = MLMForPreTraining(MLMConfig(bert_config=args.bert, vocab_size=args.vocab_size,
                                       max_seq_length=args.seq_length)).train()
    theirs = BertForMaskedLM._from_config(BertConfig(**BERT_PRESETS[args.bert], vocab_size=args.vocab_size),
                                          attn_implementation="sdpa").train()
    ids = torch.randint(5, args.vocab_size, (args.batch_size, args.seq_length))
    special = torch.zeros(args.vocab_size, dtype=torch.bool)
    special[:5] = True
    masked, labels = mask_tokens(ids, torch.Generator().manual_seed(0), special, torch.arange(5, args.vocab_size), 4)
    attention = torch.ones_like(ids)
    steps = {"hfssl": lambda: ours(input_ids=masked, labels=labels, attention_mask=attention, dropout_seed=1).loss.backward(),
             "transformers": lambda: theirs(input_ids=masked, labels=labels, attention_mask=attention).loss.backward()}
    medians, _ = interleaved_medians(steps, rounds)
    return {"median_seconds": medians, "speedup": medians["transformers"] / medians["hfssl"], "rounds": rounds}


def table(results: dict[str, dict[str, Any]]) -> str:
    base = results.get("hfssl")
    lines = ["| side | steps | real tokens | tokens/s | vs hfssl | peak RSS (MB) | CPU s | held-out acc. | perplexity |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for side, report in results.items():
        ratio = base["tokens_per_second"] / report["tokens_per_second"] if base else float("nan")
        lines.append(f"| {side} | {report['steps']} | {report['total_tokens']:,.0f} | {report['tokens_per_second']:,.0f} | "
                     f"{ratio:.2f}x | {report['peak_rss_mb']:,.0f} | {report['cpu_seconds']:.0f} | "
                     f"{100 * report['heldout']['accuracy']:.2f} % | {report['heldout']['perplexity']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps of the grouped sides")
    parser.add_argument("--bert", default="bert-mini", help="BERT preset (hfssl.models.mlm.configuration_mlm.BERT_PRESETS)")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-documents", type=int, default=None, help="cap on corpus documents (default: all)")
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--out", default="runs/bench_mlm")
    parser.add_argument("--evaluate-only", action="store_true", help="re-measure the held-out accuracy of --out's models")
    parser.add_argument("--model-step-rounds", type=int, default=0,
                        help="only time one forward + backward, hfssl vs BertForMaskedLM, interleaved, this many rounds")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, in its own process
    args = parser.parse_args()
    if args.side:
        run_side(args.side, args)
        return
    if args.model_step_rounds:
        print(json.dumps(model_step(args, args.model_step_rounds), indent=2))
        return
    if args.evaluate_only:
        results = evaluate_sides(args)
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(table(results))
        return
    forwarded = [arg for arg in sys.argv[1:] if arg != "--sides" and arg not in SIDES]
    for side in args.sides:
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, *forwarded, "--side", side], check=True)
        print(f"{side}: {time.perf_counter() - start:.0f} s wall", flush=True)
    results = evaluate_sides(args)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
