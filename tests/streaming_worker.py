"""Worker for tests/training/test_streaming_processes.py, run on two processes by tests/torchrun.py.

Each process builds the engine's training loader for a streamed local parquet source
(:func:`hfssl.training.trainer.training_dataloader`, prepared by the engine's Accelerator) and reads two
epochs of it, recording the row ids (the ``label`` column) it was handed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hfssl.recipe import load_recipe
from hfssl.registry import get_method
from hfssl.training.trainer import make_accelerator, training_dataloader

REPO = Path(__file__).resolve().parents[1]
BATCH_SIZE = 8


def read_two_epochs(out_dir: str) -> None:
    out = Path(out_dir)
    recipe = load_recipe(REPO / "recipes" / "simclr" / "digits.yaml", [
        f"data.source={out / 'shards'}", "data.streaming=true", "data.eval_split=null", f"train.batch_size={BATCH_SIZE}",
        "train.max_steps=100", "eval.protocols=[]", "train.trackers=[]", "train.progress_bar=false"])
    accelerator = make_accelerator(recipe, out / "run")
    data = get_method(recipe.method).load_training_data(recipe, accelerator)
    loader = accelerator.prepare(training_dataloader(recipe, data))
    epochs = []
    for _ in range(2):
        rows: list[int] = []
        for batch in loader:
            assert batch["pixels"].shape[0] == BATCH_SIZE
            rows += batch["labels"].tolist()
        epochs.append(rows)
    torch.save({"rank": accelerator.process_index, "processes": accelerator.num_processes, "epochs": epochs,
                "shards": data.train_dataset.num_shards}, out / f"stream_rank{accelerator.process_index}.pt")
