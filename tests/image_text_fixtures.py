"""A small image-caption source on disk, shared by the image-text data and evaluation-context tests."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

CAPTIONS = ["a red square", "a green square", "a blue square", "a grey square", "a white square", "a black square"]
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128), (255, 255, 255), (0, 0, 0)]


def caption_folder(root: Path, captions: list[str] = CAPTIONS) -> Path:
    """An image folder with metadata.csv (file_name, caption, label) in train/ and test/, as datasets reads it."""
    for split, rows in (("train", range(0, 4)), ("test", range(4, 6))):
        folder = root / split
        folder.mkdir(parents=True)
        with open(folder / "metadata.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "caption", "colour"])
            for index in rows:
                Image.new("RGB", (12, 12), COLOURS[index]).save(folder / f"{index}.png")
                writer.writerow([f"{index}.png", captions[index], index % 3])
    return root
