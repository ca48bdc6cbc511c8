"""hfssl causal language modelling against transformers' ``run_clm`` route, side by side.

Two sides train the identical GPT-2 (config, row length, batch, AdamW with the same learning rate, weight
decay, warm-up and linear decay, gradient clipping, SDPA attention, fp32) on ``builtin:english_corpus``
with the same byte-level BPE tokenizer (trained and cached by hfssl on the training documents), each in
its own process:

* ``hfssl``: ``hfssl.training.trainer.train`` on hfssl's packed rows (documents ended by
  ``<|endoftext|>``, consecutive rows sharing one token), the output layer on the real targets only;
* ``hf-run-clm``: transformers' ``Trainer`` + ``DataCollatorForLanguageModeling(mlm=False)`` on rows made as
  the ``run_clm`` example's ``group_texts`` makes them (documents tokenised, concatenated, cut into blocks,
  the remainder dropped), with one change: each document is followed by ``<|endoftext|>`` as in hfssl's
  rows (``run_clm`` itself adds none with a tokenizer that has no post-processor, and the held-out rows
  below contain it), so both sides learn from the same token stream.

Tokens/s is measured over the optimiser steps after the first (data preparation and the first step are not
counted): the batch size times the row length per step. CPU s / wall s is the process's CPU time over its
wall time for the timed steps (2.0 = both cores busy). The held-out perplexity and next-token accuracy
(``hfssl.evaluation.causal_lm.next_token_scores``: the held-out documents packed into fixed rows of the same
length) are measured on each side's saved model by the same function.

``--model-step-rounds N`` times one forward + backward of one batch instead, hfssl's model against
``GPT2LMHeadModel(labels=...)``, interleaved round after round in one process (the load of a shared machine
hits both alike), and times the output layer + loss alone: hfssl's (logits whole), the fused chunked form
(``model.loss_chunk_size=1024``) and transformers' (logits + ``ForCausalLMLoss``).

Usage::

    python scripts/bench_clm.py --steps 150 --out runs/bench_clm
    python scripts/bench_clm.py --model-step-rounds 20
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

SIDES = ("hfssl", "hf-run-clm")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"decoder_config": args.gpt2, "vocab_size": args.vocab_size, "max_seq_length": args.seq_length,
            "batch_size": args.batch_size, "lr": args.lr, "weight_decay": 0.01, "warmup_steps": max(1, args.steps // 10),
            "max_grad_norm": 1.0, "seed": 0}


def hfssl_recipe(args: argparse.Namespace, steps: int) -> Any:
    from hfssl.recipe import recipe_from_dict

    s = settings(args)
    return recipe_from_dict({
        "method": "clm",
        "model": {"decoder_config": s["decoder_config"], "vocab_size": s["vocab_size"],
                  "max_seq_length": s["max_seq_length"], "loss_chunk_size": args.loss_chunk_size},
        "data": {"source": "builtin:english_corpus", "text_column": "text", "eval_split": None, "lowercase": False,
                 "max_train_samples": args.max_documents},
        "optim": {"name": "adamw", "lr": s["lr"], "weight_decay": s["weight_decay"], "warmup_steps": s["warmup_steps"],
                  "schedule": "linear", "max_grad_norm": s["max_grad_norm"], "betas": [0.9, 0.999], "eps": 1e-8},
        "train": {"batch_size": s["batch_size"], "max_steps": steps, "checkpoint_every": 10**9, "log_every": 10**9,
                  "trackers": [], "progress_bar": False, "seed": s["seed"], "mixed_precision": "no"},
        "eval": {"protocols": []},
    })


def shared_data(args: argparse.Namespace) -> tuple[Any, Any, list[str]]:
    """The training documents, the tokenizer (hfssl's cached byte-level BPE) and the held-out texts."""
    from hfssl.data.token_rows import held_out_texts, training_documents
    from hfssl.models.clm.configuration_clm import CLMConfig
    from hfssl.models.clm.data import run_tokenizer

    recipe = hfssl_recipe(args, 1)
    train_documents, column = training_documents(recipe)
    tokenizer = run_tokenizer(recipe, CLMConfig(**recipe.model), train_documents, column)
    held_out, _ = held_out_texts(recipe.data)
    return train_documents, tokenizer, held_out


def run_hfssl(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    shared_data(args)  # the same cached tokenizer as the other side(s)
    return train_language_model(hfssl_recipe(args, args.steps), out, "clm")


def hf_rows(args: argparse.Namespace, tokenizer: Any, documents: Any) -> Any:
    """Rows as transformers' run_clm example builds them (each document followed by the end-of-text token)."""
    length = args.seq_length
    eos = tokenizer.eos_token_id

    def tokenize_function(batch: dict[str, list]) -> dict[str, list]:
        output = tokenizer(batch["text"])
        output["input_ids"] = [ids + [eos] for ids in output["input_ids"]]
        output["attention_mask"] = [mask + [1] for mask in output["attention_mask"]]
        return output

    def group_texts(examples: dict[str, list]) -> dict[str, list]:
        concatenated = {key: sum(examples[key], []) for key in examples}
        total = (len(concatenated[next(iter(examples))]) // length) * length
        return {key: [values[i: i + length] for i in range(0, total, length)] for key, values in concatenated.items()}

    tokenized = documents.map(tokenize_function, batched=True, remove_columns=documents.column_names)
    return tokenized.map(group_texts, batched=True, batch_size=1000)


def gpt2_config(args: argparse.Namespace, vocab_size: int, eos: int) -> Any:
    from transformers import GPT2Config

    from hfssl.models.clm.configuration_clm import GPT2_PRESETS

    return GPT2Config(**GPT2_PRESETS[args.gpt2], n_positions=1024, vocab_size=vocab_size, bos_token_id=eos,
                      eos_token_id=eos, pad_token_id=eos)


def run_hf(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    import torch
    from transformers import DataCollatorForLanguageModeling, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments
    from transformers import set_seed

    documents, tokenizer, _ = shared_data(args)
    rows = hf_rows(args, tokenizer, documents)
    s = settings(args)
    set_seed(s["seed"])
    model = GPT2LMHeadModel._from_config(gpt2_config(args, len(tokenizer), tokenizer.eos_token_id),
                                         attn_implementation="sdpa")
    timer = StepTimer()

    class Callback(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            timer.tick()

    training_args = TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=s["batch_size"], max_steps=args.steps,
        learning_rate=s["lr"], weight_decay=s["weight_decay"], warmup_steps=s["warmup_steps"],
        lr_scheduler_type="linear", max_grad_norm=s["max_grad_norm"], adam_beta1=0.9, adam_beta2=0.999,
        adam_epsilon=1e-8, logging_steps=10**9, save_strategy="no", report_to="none", seed=s["seed"],
        dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=False)
    trainer = Trainer(model=model, args=training_args, train_dataset=rows, data_collator=collator,
                      callbacks=[Callback()])
    output = trainer.train()
    model.save_pretrained(out / "encoder")
    tokenizer.save_pretrained(out / "encoder")
    return {"timer": timer, "row_tokens": float(args.seq_length), "rows": len(rows), "final_loss": output.training_loss}


def run_side(side: str, args: argparse.Namespace) -> None:
    import torch

    out = Path(args.out) / side
    out.mkdir(parents=True, exist_ok=True)
    result = run_hfssl(args, out) if side == "hfssl" else run_hf(args, out)
    timer = result.pop("timer")
    tokens_per_step = args.batch_size * result["row_tokens"]
    report = {
        "side": side, "steps": timer.steps, "timed_steps": timer.timed_steps, "timed_seconds": timer.seconds,
        "tokens_per_step": tokens_per_step, "tokens_per_second": timer.per_second(tokens_per_step),
        "cores_used": timer.cores, "cpu_seconds": timer.cpu_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), **result,
    }
    (out / "train.json").write_text(json.dumps(report, indent=2) + "\n")


def evaluate_sides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from hfssl.evaluation.causal_lm import next_token_scores
    from hfssl.evaluation.text import load_causal_lm

    _, _, held_out = shared_data(args)
    results = {}
    for side in SIDES:
        folder = Path(args.out) / side
        if not (folder / "train.json").is_file():
            continue
        report = json.loads((folder / "train.json").read_text())
        report["heldout"] = next_token_scores(load_causal_lm(path=str(folder / "encoder")), held_out, args.seq_length)
        results[side] = report
    return results


def model_step(args: argparse.Namespace, rounds: int) -> dict[str, Any]:
    """Forward + backward of one batch, hfssl's model against ``GPT2LMHeadModel(labels=...)``, interleaved in
    one process; also the output layer + loss alone (fused, against logits + ``ForCausalLMLoss``): medians."""
    import torch
    from transformers import GPT2LMHeadModel

    from hfssl.losses.causal_lm import linear_cross_entropy
    from hfssl.models.clm import CLMConfig, CLMForPreTraining

    torch.manual_seed(0)
    ours = CLMForPreTraining(CLMConfig(decoder_config=args.gpt2, vocab_size=args.vocab_size,
                                       max_seq_length=args.seq_length)).train()
    theirs = GPT2LMHeadModel._from_config(gpt2_config(args, args.vocab_size, 0), attn_implementation="sdpa").train()
    theirs.load_state_dict(ours.language_model.state_dict())
    ids = torch.randint(1, args.vocab_size, (args.batch_size, args.seq_length))
    attention = torch.ones_like(ids)
    hidden = torch.randn(args.batch_size * (args.seq_length - 1), ours.config.hidden_size, requires_grad=True)
    weight = ours.language_model.get_output_embeddings().weight.detach().clone().requires_grad_(True)
    targets = ids[:, 1:].reshape(-1)

    def plain_head() -> None:
        logits = (hidden @ weight.T).view(args.batch_size, args.seq_length - 1, -1)
        theirs.loss_function(logits, ids[:, 1:], vocab_size=args.vocab_size).backward()

    def hfssl_step(chunk: int | None) -> None:
        ours.config.loss_chunk_size = chunk
        ours(input_ids=ids, attention_mask=attention, dropout_seed=1).loss.backward()

    def head(chunk: int | None) -> None:
        (linear_cross_entropy(hidden, weight, None, targets, chunk)[0] / targets.numel()).backward()

    steps = {"hfssl": lambda: hfssl_step(args.loss_chunk_size),
             "transformers": lambda: theirs(input_ids=ids, labels=ids, attention_mask=attention).loss.backward(),
             "head_plain": plain_head}
    for chunk in args.chunk_sizes:
        if chunk != args.loss_chunk_size:
            steps[f"hfssl_chunk_{chunk}"] = lambda chunk=chunk: hfssl_step(chunk)
    steps["head_whole"] = lambda: head(None)
    for chunk in args.chunk_sizes:
        steps[f"head_fused_{chunk}"] = lambda chunk=chunk: head(chunk)
    medians, cores = interleaved_medians(steps, rounds)
    return {"median_seconds": medians, "loss_chunk_size": args.loss_chunk_size,
            "speedup": medians["transformers"] / medians["hfssl"],
            "head_share_of_transformers_step": medians["head_plain"] / medians["transformers"],
            "cores_used": cores, "rounds": rounds,
            "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def table(results: dict[str, dict[str, Any]]) -> str:
    base = results.get("hfssl")
    lines = ["| side | steps | tokens/s | hfssl vs side | CPU s / wall s | peak RSS (MB) | held-out perplexity | "
             "next-token acc. |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for side, report in results.items():
        ratio = base["tokens_per_second"] / report["tokens_per_second"] if base else float("nan")
        lines.append(f"| {side} | {report['steps']} | {report['tokens_per_second']:,.0f} | {ratio:.2f}x | "
                     f"{report['cores_used']:.2f} | {report['peak_rss_mb']:,.0f} | {report['heldout']['perplexity']:.1f} | "
                     f"{100 * report['heldout']['accuracy']:.2f} % |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps of each side")
    parser.add_argument("--gpt2", default="gpt2-mini", help="GPT-2 preset (hfssl.models.clm.configuration_clm.GPT2_PRESETS)")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-documents", type=int, default=None, help="cap on corpus documents (default: all)")
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--out", default="runs/bench_clm")
    parser.add_argument("--loss-chunk-size", type=int, default=None,
                        help="hfssl's model.loss_chunk_size (default: the recipe default, logits formed whole)")
    parser.add_argument("--chunk-sizes", type=int, nargs="*", default=[1024],
                        help="with --model-step-rounds: also time hfssl's step and the output layer + loss fused "
                             "in chunks of these many tokens")
    parser.add_argument("--model-step-rounds", type=int, default=0,
                        help="only time one forward + backward, hfssl vs GPT2LMHeadModel, interleaved, this many rounds")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, in its own process
    args = parser.parse_args()
    if args.side:
        run_side(args.side, args)
        return
    if args.model_step_rounds:
        print(json.dumps(model_step(args, args.model_step_rounds), indent=2))
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
