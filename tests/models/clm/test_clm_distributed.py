"""Two real gloo processes (torchrun) on unequal halves of a batch, holding unequal numbers of tokens, give
the loss and the gradients of one process on the whole batch: the next-token loss is normalised by the
global token count."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from clm_worker import build_clm  # noqa: E402
from torchrun import run_two_ranks  # noqa: E402

SPLIT = [3, 5]


def test_two_processes_equal_one_process_on_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    model = build_clm()
    generator = torch.Generator().manual_seed(1)
    rows = sum(SPLIT)
    input_ids = torch.randint(1, 100, (rows, 16), generator=generator)
    attention = torch.ones_like(input_ids)
    attention[0, 4:] = 0  # rank 0 holds far fewer tokens than rank 1
    attention[1, 7:] = 0
    input_ids[attention == 0] = 0
    batch = {"input_ids": input_ids, "attention_mask": attention}
    torch.save({"state": model.state_dict(), "batch": batch, "split": SPLIT}, tmp_path / "clm_inputs.pt")

    results = run_two_ranks("models.clm.clm_worker", "main", tmp_path, "clm_", timeout=240)

    reference = model(**batch)
    reference.loss.backward()
    tight = {"rtol": 1e-9, "atol": 1e-11}
    torch.testing.assert_close((results[0]["loss"] + results[1]["loss"]) / 2, reference.loss.detach(), **tight)
    for result in results:
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(result["grads"][name], parameter.grad, **tight, msg=name)
    # Control: each rank's own mean over its tokens, averaged, is not the global mean here.
    with torch.no_grad():
        halves = [model(**{key: value[:SPLIT[0]] for key, value in batch.items()}).loss,
                  model(**{key: value[SPLIT[0]:] for key, value in batch.items()}).loss]
    assert abs(float((halves[0] + halves[1]) / 2 - reference.loss.detach())) > 1e-3
