"""Two real gloo processes on unequal halves of a batch, each with the gradient cache, give the loss and the
gradients of one process on the whole batch without it: negatives gathered across processes with gradients,
duplicates masked across processes too."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import simcse_worker as worker  # noqa: E402
from torchrun import run_two_ranks  # noqa: E402

SPLIT = [3, 5]


def test_two_processes_with_the_cache_equal_one_process_on_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    model = worker.build_model(chunk_size=None)
    generator = torch.Generator().manual_seed(2)
    rows = sum(SPLIT)
    input_ids = torch.randint(5, 100, (rows, 10), generator=generator)
    input_ids[6] = input_ids[1]  # the same sentence on both processes
    attention = torch.ones_like(input_ids)
    attention[::3, 7:] = 0
    attention[6] = attention[1]
    keys = torch.arange(rows) * 11
    keys[6] = keys[1]
    batch = {"input_ids": input_ids, "attention_mask": attention, "text_keys": keys}
    torch.save({"state": model.state_dict(), "batch": batch, "split": SPLIT, "chunk_size": 2},
               tmp_path / "simcse_inputs.pt")

    results = run_two_ranks("models.simcse.simcse_worker", "main", tmp_path, "simcse_", timeout=240)

    reference = model(**batch)
    reference.loss.backward()
    tight = {"rtol": 1e-9, "atol": 1e-11}
    torch.testing.assert_close((results[0]["loss"] + results[1]["loss"]) / 2, reference.loss.detach(), **tight)
    for result in results:
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(result["grads"][name], parameter.grad, **tight, msg=name)
