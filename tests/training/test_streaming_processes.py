"""A streamed source (``data.streaming``: a ``datasets.IterableDataset``) split over two real processes:
three parquet shards of unequal size, so the shards cannot be dealt out evenly. Every row is handed to
exactly one process once per epoch, except the rows of the last incomplete global batch, which the
engine leaves out as one process leaves out its last incomplete batch (``drop_last``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hfssl.data.builtin import load_digits  # noqa: E402
from streaming_worker import BATCH_SIZE  # noqa: E402
from torchrun import run_two_ranks  # noqa: E402

SHARDS = ((0, 45), (45, 76), (76, 100))  # 100 rows in 3 parquet files of 45, 31 and 24 rows


def test_streamed_shards_are_split_over_processes_without_repeats(tmp_path):
    digits = load_digits()["train"].select(range(SHARDS[-1][1]))
    rows = digits.remove_columns("label").add_column("label", list(range(len(digits))))  # the label is the row id
    (tmp_path / "shards").mkdir()
    for index, (start, stop) in enumerate(SHARDS):
        rows.select(range(start, stop)).to_parquet(tmp_path / "shards" / f"train-{index:05d}-of-00003.parquet")

    results = run_two_ranks("streaming_worker", "read_two_epochs", tmp_path, "stream_")
    assert [result["processes"] for result in results] == [2, 2]
    assert results[0]["shards"] == 3
    total = len(rows)
    global_batch = BATCH_SIZE * 2
    kept = total - total % global_batch  # 96: the last 4 rows do not fill a global batch of 16
    assert total % global_batch == total % BATCH_SIZE  # here exactly the rows one process would leave out
    for epoch in range(2):
        first, second = (result["epochs"][epoch] for result in results)
        assert len(first) == len(second) == kept // 2, "the processes got different numbers of rows"
        assert not set(first) & set(second), f"epoch {epoch}: a row went to both processes"
        assert len(set(first)) == len(first) and len(set(second)) == len(second), f"epoch {epoch}: a row repeated"
        assert sorted(first + second) == list(range(kept)), f"epoch {epoch}: rows skipped"
        # Each process gets its own half of every global batch, in the stream's order.
        assert first[:BATCH_SIZE] == list(range(BATCH_SIZE))
        assert second[:BATCH_SIZE] == list(range(BATCH_SIZE, global_batch))
