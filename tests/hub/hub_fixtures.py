"""Helpers for the publishing tests: tiny run directories, file snapshots, fresh Python processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

TOKEN = "hf_hfsslTestToken0123456789AbCdEf"
USER = "alice"

TINY_RESNET = {"model_type": "resnet", "layer_type": "basic", "depths": [1, 1], "hidden_sizes": [16, 32],
               "embedding_size": 16}
TINY_VIT_MAE = {"model_type": "vit_mae", "image_size": 16, "patch_size": 4, "hidden_size": 32,
                "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                "decoder_hidden_size": 32, "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2,
                "decoder_intermediate_size": 64}

EVAL_RESULTS = {
    "dataset": "builtin:digits", "train_split": "train", "test_split": "test",
    "num_train": 1437, "num_test": 360, "num_classes": 10,
    "results": [
        {"protocol": "knn", "features": "model", "k": 20, "temperature": 0.07, "top1": 0.9472, "top5": 0.9917},
        {"protocol": "knn", "features": "model", "k": 200, "temperature": 0.07, "top1": 0.9305, "top5": 0.9944},
        {"protocol": "linear", "features": "model", "C": 0.1, "top1": 0.9611, "top5": 1.0},
    ],
    "baselines": [
        {"protocol": "knn", "features": "raw_pixels", "k": 20, "temperature": 0.07, "top1": 0.9083, "top5": 0.9861},
        {"protocol": "knn", "features": "raw_pixels", "k": 200, "temperature": 0.07, "top1": 0.8528, "top5": 0.9806},
        {"protocol": "linear", "features": "raw_pixels", "C": 1.0, "top1": 0.9417, "top5": 0.9972},
    ],
}

# Inserted at the top of every "plain transformers" subprocess: importing hfssl there is an error.
BLOCK_HFSSL = textwrap.dedent(
    """
    import importlib.abc, sys

    class _NoHfssl(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hfssl" or name.startswith("hfssl."):
                raise ImportError("this process must not import hfssl")
            return None

    sys.meta_path.insert(0, _NoHfssl())
    """
)


def make_run(
    run_dir: Path,
    method: str = "simclr",
    *,
    source: str = "builtin:digits",
    evaluation: dict[str, Any] | None = EVAL_RESULTS,
    images: bool = True,
    training_state: bool = True,
    model_overrides: dict[str, Any] | None = None,
) -> Path:
    """A tiny but complete run directory, laid out as ARCHITECTURE.md describes."""
    from hfssl.plots import save_projection_plot, save_reconstruction_plot
    from hfssl.training.record import TRAINING_RECORD_FILE, TrainingClock, record_text, training_record
    from hfssl.export import export_encoder
    from hfssl.registry import get_method
    from hfssl.recipe import recipe_from_dict

    spec = get_method(method)
    if method == "mae":
        model_kwargs: dict[str, Any] = {"backbone_config": TINY_VIT_MAE}
        image_size = 16
    else:
        model_kwargs = {"backbone_config": TINY_RESNET, "projection_hidden_dim": 32, "projection_dim": 16}
        image_size = 32
    model_kwargs.update(model_overrides or {})
    torch.manual_seed(0)
    model = spec.model_class(spec.config_class(**model_kwargs)).eval()
    model.save_pretrained(run_dir)
    recipe = recipe_from_dict({
        "method": method,
        "model": {key: value for key, value in model_kwargs.items() if key != "backbone_name_or_path"},
        "data": {"source": source, "image_size": image_size, "channels": 3},
        "views": {"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3]},
        "train": {"max_steps": 20, "batch_size": 64},
        "hub": {"license": "mit"},
    }, check_model=False)
    recipe.save(run_dir / "recipe.yaml")
    # What the trainer records beside the model: 20 steps of 64 in 42 s on this machine's CPU.
    clock = TrainingClock(seconds=42.0, cpu_seconds=80.0, examples=20 * 64, segments=1)
    (run_dir / TRAINING_RECORD_FILE).write_text(record_text(training_record(clock, 20, 1, torch.device("cpu"), "no")))
    export_encoder(model, run_dir / "encoder", image_size, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3), 3)
    if evaluation is not None:
        (run_dir / "eval_results.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    if images:
        generator = np.random.default_rng(0)
        labels = np.repeat(np.arange(10), 5)
        features = generator.normal(size=(50, 8)) + labels[:, None]
        save_projection_plot(features, labels, [f"digit {i}" for i in range(10)], run_dir / "images" / "embeddings_2d.png")
        if method == "mae":
            pictures = generator.uniform(size=(3, 4, 16, 16, 3))
            save_reconstruction_plot(*pictures, run_dir / "images" / "reconstructions.png")
    if training_state:
        # What `hfssl train` leaves beside the model, which a push must never upload.
        checkpoint = run_dir / "checkpoints" / "step-00000020"
        checkpoint.mkdir(parents=True)
        (checkpoint / "trainer_state.json").write_text(json.dumps({"state": {"global_step": 20, "epoch": 1}}))
        (checkpoint / "optimizer.bin").write_bytes(os.urandom(2048))
        (run_dir / "logs").mkdir()
        (run_dir / "logs" / "events.out.tfevents.1.host").write_bytes(b"tensorboard events")
    return run_dir


def snapshot(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Relative path -> (sha256, size, mtime_ns) of every file and folder under ``folder``."""
    state = {}
    for path in sorted(folder.rglob("*")):
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[path.relative_to(folder).as_posix()] = (digest, stat.st_size if path.is_file() else 0, stat.st_mtime_ns)
    return state


def subprocess_env(endpoint: str, hf_home: Path, token: str | None = None) -> dict[str, str]:
    """The environment of a fresh process that talks to the local Hub (online, no Xet)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update({"HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(hf_home),
                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1",
                "PYTHONWARNINGS": "ignore"})
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_python(code: str, env: dict[str, str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; fail the test with its output when it exits non-zero."""
    script = cwd / f"script_{abs(hash(code)) % 10**8}.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script)], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def check_hub_resnet_encoders(endpoint: str, runs: dict[str, Path], image_size: int, tmp_path: Path) -> None:
    """Every ``alice/<method>-tiny`` repo's ``encoder/`` loads from the Hub at ``endpoint`` in one fresh process
    without hfssl as an RGB ``ResNetModel`` (grey encoders are exported for RGB input, hfssl/export.py), and its
    pooled features on fixed pixels equal those of the run's own ``encoder/`` exactly."""
    from transformers import AutoModel

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, image_size, image_size, generator=generator)
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    run_python(BLOCK_HFSSL + textwrap.dedent(f"""
        import numpy, torch
        from transformers import AutoModel
        torch.set_num_threads(1)
        pixels = torch.from_numpy(numpy.load("{tmp_path}/pixels.npy"))
        for method in {sorted(runs)!r}:
            encoder = AutoModel.from_pretrained(f"{USER}/{{method}}-tiny", subfolder="encoder").eval()
            assert type(encoder).__name__ == "ResNetModel" and encoder.config.num_channels == 3, (method, encoder.config)
            with torch.no_grad():
                numpy.save(f"{tmp_path}/{{method}}.npy", encoder(pixel_values=pixels).pooler_output.numpy())
        assert not any(name.startswith("hfssl") for name in sys.modules)
    """), subprocess_env(endpoint, tmp_path / "hf_home_load"), tmp_path)
    for method, run_dir in runs.items():
        local = AutoModel.from_pretrained(run_dir / "encoder").eval()
        with torch.no_grad():
            np.testing.assert_array_equal(np.load(tmp_path / f"{method}.npy"),
                                          local(pixel_values=pixels).pooler_output.numpy())


def python_blocks(markdown: str, after_heading: str | None = None) -> list[str]:
    """The ```python blocks of a markdown text, optionally only those after a heading."""
    import re

    if after_heading is not None:
        markdown = markdown[markdown.index(after_heading):]
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


TINY_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "capital", "of", "france", "is", ".", ",", "paris",
              "king", "queen", "first", "sentence", "another", "longer", "to", "embed", "a", "photo", "cat", "dog",
              "picture"]


def tiny_tokenizer():  # noqa: ANN201 - a transformers PreTrainedTokenizerFast
    """A word-level BERT-style tokenizer over :data:`TINY_WORDS`, built offline with 🤗 tokenizers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({word: index for index, word in enumerate(TINY_WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def write_text_encoder(folder: Path, family: str, text_pooling: str = "pooler") -> None:
    """Replace ``folder`` with the transferable model of a text family: a tiny BertForMaskedLM (masked LM,
    word embeddings), a tiny GPT2LMHeadModel (causal LM) or a ViT + BERT VisionTextDualEncoderModel with its
    processor (image-text; with ``text_pooling`` ``mean``/``cls`` hfssl's PooledVisionTextDualEncoderModel and
    its code file, as CLIP's export writes them)."""
    import shutil

    from transformers import (BertConfig, BertForMaskedLM, VisionTextDualEncoderConfig, VisionTextDualEncoderModel,
                              VisionTextDualEncoderProcessor, ViTConfig, ViTImageProcessor)

    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(0)
    bert = BertConfig(vocab_size=len(TINY_WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64)
    if family == "image-text":
        vit = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64)
        model = VisionTextDualEncoderModel(VisionTextDualEncoderConfig.from_vision_text_configs(vit, bert, projection_dim=16))
        if text_pooling != "pooler":
            from hfssl.models.clip import modeling_pooled_dual_encoder as pooled

            model = pooled.PooledVisionTextDualEncoderModel(pooled.PooledVisionTextDualEncoderConfig.from_vision_text_configs(
                vit, bert, projection_dim=16, text_pooling=text_pooling))
            folder.mkdir(parents=True)
            for target in (folder, folder.parent):  # as CLIP's export into RUN/encoder writes it (remote code at the root)
                shutil.copyfile(pooled.__file__, target / "modeling_pooled_dual_encoder.py")
        processor = VisionTextDualEncoderProcessor(image_processor=ViTImageProcessor(size={"height": 16, "width": 16}),
                                                   tokenizer=tiny_tokenizer())
    elif family == "causal-language-modeling":
        from transformers import GPT2Config, GPT2LMHeadModel

        processor = tiny_tokenizer()
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(TINY_WORDS), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                           eos_token_id=processor.sep_token_id, pad_token_id=processor.pad_token_id))
    else:
        model, processor = BertForMaskedLM(bert), tiny_tokenizer()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
