"""Shared by the colour-prediction methods' tests (colorization, split-brain): a short real run on the emoji images,
and the model card's own transformers snippet run in a fresh process without hfssl on real test images."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
TINY_EMOJI_RESNET = ("{model_type: resnet, layer_type: basic, embedding_size: 8, hidden_sizes: [8, 16], "
                     "depths: [1, 1]}")
FAST = ["train.progress_bar=false", "train.trackers=[]", "train.knn_every=null", "data.image_size=16",
        f"model.backbone_config={TINY_EMOJI_RESNET}", "model.decoder_hidden_size=16", "train.batch_size=32",
        "eval.max_train_samples=200", "eval.max_test_samples=64", "eval.linear.c_grid=[1.0]", "eval.projections=[pca]",
        "eval.baselines=false"]


def card_snippet(card: str) -> str:
    """The first Python block after "With plain transformers" in a run's model card."""
    section = card.split("### With plain transformers", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def card_snippet_features(run_dir: Path, pixels: np.ndarray, tmp_path: Path) -> dict[str, Any]:
    """Run the card's snippet (its ``repo_id`` pointed at ``run_dir``, its example image replaced by each of
    ``pixels`` (N, H, W, 3) uint8) in a process that never imports hfssl; returns the embeddings and the check."""
    snippet = card_snippet((run_dir / "README.md").read_text())
    snippet = re.sub(r'repo_id = ".*?"', f"repo_id = {str(run_dir)!r}", snippet)
    snippet = re.sub(r"\nimage = Image\.new\(.*?\n", "\nimage = IMAGE\n", snippet)
    np.save(tmp_path / "pixels.npy", pixels)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from PIL import Image
        rows = []
        for array in np.load({str(tmp_path / 'pixels.npy')!r}):
            IMAGE = Image.fromarray(array)
            namespace = {{"IMAGE": IMAGE}}
            exec(compile(SNIPPET, "card", "exec"), namespace)
            rows.append(namespace["embeddings"][0].tolist())
        print(json.dumps({{"embeddings": rows, "hfssl_imported": "hfssl" in sys.modules}}))
    """).replace("SNIPPET", repr(snippet))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["embeddings"] = torch.tensor(report["embeddings"])
    return report
