"""Two real gloo processes (torchrun) on unequal halves of a batch give the loss and the gradients of one
process on the whole batch: the masked-token loss is normalised by the global count of masked tokens."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TESTS))

import distributed_worker as worker  # noqa: E402
from torchrun import run_two_ranks  # noqa: E402

SPLIT = [3, 5]


def test_two_processes_equal_one_process_on_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    model = worker.build_mlm()
    generator = torch.Generator().manual_seed(1)
    rows = sum(SPLIT)
    input_ids = torch.randint(5, 100, (rows, 16), generator=generator)
    input_ids[:, 0] = 2
    # Unequal numbers of masked tokens per row (and so per rank): 1 to 8.
    labels = torch.full_like(input_ids, -100)
    for row in range(rows):
        positions = torch.randperm(15, generator=generator)[: 1 + row] + 1
        labels[row, positions] = input_ids[row, positions]
    attention = torch.ones_like(input_ids)
    attention[0, 12:] = 0
    batch = {"input_ids": torch.where(labels >= 0, torch.full_like(input_ids, 4), input_ids), "labels": labels,
             "attention_mask": attention, "token_type_ids": (torch.arange(16) >= 8).long().expand(rows, 16).clone(),
             "next_sentence_label": torch.randint(0, 2, (rows,), generator=generator)}
    torch.save({"state": model.state_dict(), "batch": batch, "split": SPLIT}, tmp_path / "mlm_inputs.pt")

    results = run_two_ranks("distributed_worker", "main_mlm", tmp_path, "mlm_", timeout=240)

    reference = model(**batch)
    reference.loss.backward()
    tight = {"rtol": 1e-9, "atol": 1e-11}
    for name in ("loss", "mlm_loss", "nsp_loss"):
        torch.testing.assert_close((results[0][name] + results[1][name]) / 2, getattr(reference, name).detach(), **tight)
    for result in results:
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(result["grads"][name], parameter.grad, **tight, msg=name)
    # Control: averaging each rank's own mean over its masked tokens (a loss without the global count)
    # would not give the global mean here, so the check above can fail.
    with torch.no_grad():
        halves = [model(**{key: value[:SPLIT[0]] for key, value in batch.items()}).mlm_loss,
                  model(**{key: value[SPLIT[0]:] for key, value in batch.items()}).mlm_loss]
    assert abs(float((halves[0] + halves[1]) / 2 - reference.mlm_loss.detach())) > 1e-3
