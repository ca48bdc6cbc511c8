"""Worker for tests/training/test_sharding.py: the real engine under DDP and under FSDP2 on two gloo processes.

Run by ``tests/torchrun.py`` (``run_two_ranks("sharding_worker", "main", DIR, "sharding_")``). In one pair of
processes, for each method of :data:`METHODS`, :func:`hfssl.training.trainer.train` runs the same tiny recipe
for a few steps with the Accelerate state of a DDP launch and then with the state of an FSDP2 launch from
``recipes/accelerate/fsdp2_cpu_2proc.yaml`` (the ``FSDP_*`` environment ``accelerate launch --config_file``
exports for it, so ``make_accelerator`` builds the Accelerator as under that launch). Each rank records the
losses the engine logged at every step (gathered over the processes), what a callback computed through
``get_*_features`` and ``get_embeddings`` of the training model, and the saved full models' paths; the test
compares DDP with FSDP2. MAE's FSDP2 run goes through ``hfssl train`` (export and card of the gathered model).
DINO under FSDP2 is then resumed with ``hfssl train --resume-from`` its step-2 checkpoint (the sharded state
dict) and must end bit-identical; resuming a checkpoint under the other strategy, NaN written into one
process's shard, and SimCLR (a ResNet with BatchNorm) must be refused or stopped before anything is saved.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
import yaml  # noqa: E402

from hfssl.training.trainer import TrainerCallback  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

FSDP2_CONFIG = REPO / "recipes" / "accelerate" / "fsdp2_cpu_2proc.yaml"
STEPS = 3
COMMON = [f"train.max_steps={STEPS}", "train.batch_size=8", "train.log_every=1", "train.checkpoint_every=10",
          "train.keep_checkpoints=3", "train.progress_bar=false", "train.trackers=[]", "train.knn_every=null",
          "eval.protocols=[]", "data.num_workers=0", "train.sync_batchnorm=false"]
VIT_1CH = ("{model_type: vit, image_size: 16, patch_size: 4, num_channels: 1, hidden_size: 32, num_hidden_layers: 2, "
           "num_attention_heads: 2, intermediate_size: 64}")
#: method -> (recipe, overrides): the shipped digits / text / emoji recipes with tiny transformers inside.
METHODS: dict[str, tuple[str, list[str]]] = {
    # DINO with its scheduled weight decay and teacher temperature, its centre, and the last layer frozen for
    # the first steps (0.02 of an epoch); its head without BatchNorm here: MoCo v3's heads have BatchNorm.
    "dino": ("recipes/dino/digits.yaml", [f"model.backbone_config={VIT_1CH}", "model.head_batch_norm=false",
                                          "model.head_hidden_dim=32",
                                          "model.head_bottleneck_dim=16", "model.head_output_dim=64",
                                          "model.freeze_last_layer_epochs=0.02", "views.num_local_views=2"]),
    "moco_v3": ("recipes/moco_v3/digits.yaml", [f"model.backbone_config={VIT_1CH}", "model.projection_hidden_dim=32",
                                                "model.projection_dim=16", "model.prediction_hidden_dim=32"]),
    "mae": ("recipes/mae/digits.yaml", [
        "model.backbone_config={model_type: vit_mae, image_size: 16, patch_size: 4, num_channels: 1, hidden_size: 32, "
        "num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, decoder_hidden_size: 32, "
        "decoder_num_hidden_layers: 1, decoder_num_attention_heads: 2, decoder_intermediate_size: 64}"]),
    "mlm": ("recipes/mlm/lee.yaml", [
        "model.bert_config={num_hidden_layers: 2, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, "
        "hidden_dropout_prob: 0.0, attention_probs_dropout_prob: 0.0}", "model.max_seq_length=32"]),
    # Barlow Twins on a ViT with the custom LARS optimiser (per-parameter norms for the trust ratio, its
    # lars_exclude group) and per-parameter gradient clipping low enough to clip: both read each parameter's
    # norm, which under FSDP2 must be the whole parameter's, not the local shard's. Its projector has BatchNorm.
    "barlow_twins": ("recipes/barlow_twins/digits.yaml", [
        f"model.backbone_config={VIT_1CH}", "model.projection_hidden_dim=32", "model.projection_dim=16",
        "optim.name=lars", "optim.lr=0.2", "optim.weight_decay=1.5e-6",
        "optim.parameter_groups.biases_and_norms.lr_scale=0.024", "optim.max_grad_norm=0.05",
        "optim.grad_clip_mode=per_parameter"]),
    # CLIP's 0-d logit_scale is sharded as a 1-d parameter and saved 0-d again.
    "clip": ("recipes/clip/emoji.yaml", [
        "model.vision_config={model_type: vit, image_size: 32, patch_size: 8, hidden_size: 32, num_hidden_layers: 2, "
        "num_attention_heads: 2, intermediate_size: 64}",
        "model.text_config={model_type: bert, vocab_size: 30522, hidden_size: 32, num_hidden_layers: 2, "
        "num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 64, hidden_dropout_prob: 0.0, "
        "attention_probs_dropout_prob: 0.0}", "model.projection_dim=16", "model.max_text_length=16"]),
}


def fsdp2_environment() -> dict[str, str]:
    """What ``accelerate launch --config_file fsdp2_cpu_2proc.yaml`` exports for the FSDP plugin
    (``fsdp_<key>: value`` -> ``FSDP_<KEY>=value``, as Accelerate's launcher writes them)."""
    config = yaml.safe_load(FSDP2_CONFIG.read_text())
    assert config["distributed_type"] == "FSDP" and config["fsdp_config"]["fsdp_version"] == 2
    environment = {"ACCELERATE_USE_FSDP": "true"}
    for key, value in config["fsdp_config"].items():
        environment[key.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return environment


def use_strategy(name: str) -> None:
    """A fresh Accelerate state (the process group stays) configured as a DDP or an FSDP2 launch."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    AcceleratorState._reset_state(reset_partial_state=False)
    if PartialState._shared_state:  # the process group stays; the strategy of the last state goes
        PartialState._shared_state["distributed_type"] = DistributedType.MULTI_CPU
    for key in [key for key in os.environ if key.startswith("FSDP_") or key == "ACCELERATE_USE_FSDP"]:
        del os.environ[key]
    if name.startswith("fsdp2"):
        os.environ.update(fsdp2_environment())
    if name == "fsdp2-layers":  # each transformer block its own FSDP unit, as fsdp2_gpu.yaml suggests for large ViTs
        os.environ.update({"FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
                           "FSDP_TRANSFORMER_CLS_TO_WRAP": "ViTLayer"})


class LoggedSteps(logging.Handler):
    """The values the engine logs at each step (``train.log_every=1``): ``{step: {"train/loss": ...}}``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.steps: dict[int, dict[str, float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "step %d: %s":
            step, logs = record.args
            self.steps[int(step)] = {key: float(value) for key, value in logs.items() if key.startswith("train/")}


class FeaturesProbe(TrainerCallback):
    """A training callback: the training model's features of fixed inputs after each step, through the
    capabilities that evaluation uses (``get_embeddings``; CLIP's ``get_image_features``/``get_text_features``)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.features: dict[int, dict[str, torch.Tensor]] = {}
        self.units = 0  # FSDP units of the training model (0: not sharded)

    def on_step_end(self, step: int, model: Any, data: Any, accelerator: Any) -> dict[str, float]:
        from torch.distributed.fsdp import FSDPModule

        self.units = sum(isinstance(module, FSDPModule) for module in accelerator._models[0].modules())
        generator = torch.Generator().manual_seed(step)
        with torch.no_grad():
            if self.method == "clip":
                pixels = torch.randn(3, 3, 32, 32, generator=generator)
                ids = torch.randint(1000, 30000, (3, 6), generator=generator)
                self.features[step] = {"image": model.get_image_features(pixels).clone(),
                                       "text": model.get_text_features(ids, torch.ones_like(ids)).clone()}
            elif self.method != "mlm":
                self.features[step] = {"embeddings": model.get_embeddings(torch.randn(3, 1, 16, 16,
                                                                                      generator=generator)).clone()}
        return {}


class PoisonShard(TrainerCallback):
    """A training callback that writes NaN into this process's shard of one parameter after the last step,
    through the sharded training model (Accelerate's prepared model; the callback itself is given a gathered
    copy). MAE's ``cls_token`` has one row: it lies whole on process 0, and process 1's shard is empty, so
    only process 0 sees the NaN and process 1 must learn it from the others."""

    NAME = "mae.vit.embeddings.cls_token"

    def reads_model(self, step: int) -> bool:
        return False  # it writes into the shards, it reads no weights: no gathered copy

    def on_step_end(self, step: int, model: Any, data: Any, accelerator: Any) -> dict[str, float]:
        sharded = accelerator._models[0]
        assert sharded is model, "a callback that reads no weights is given the training model"
        with torch.no_grad():
            dict(sharded.named_parameters())[self.NAME].to_local().fill_(float("nan"))
        return {}


def train_once(method: str, strategy: str, out_dir: Path, cli: list[str] | None = None,
               extra: list[str] | None = None) -> dict[str, Any]:
    """Train ``method``'s tiny recipe under ``strategy`` with the engine (and a features callback), or with
    ``cli`` through ``hfssl train`` (the whole pipeline: export and card too), in this process."""
    from accelerate.state import AcceleratorState

    from hfssl.cli import main as hfssl_main
    from hfssl.recipe import load_recipe
    from hfssl.training.trainer import train

    use_strategy(strategy)
    recipe_path, overrides = METHODS[method]
    handler, trainer_logger = LoggedSteps(), logging.getLogger("hfssl.training.trainer")
    trainer_logger.addHandler(handler)
    trainer_logger.setLevel(logging.DEBUG)
    probe = FeaturesProbe(method)
    start = time.perf_counter()
    try:
        if cli is None:
            train(load_recipe(REPO / recipe_path, [*COMMON, *overrides, *(extra or [])]), out_dir, callbacks=[probe])
        else:
            # ``hfssl train`` may end the process group when it is done (the group is the command's); here the
            # group is this worker's, which runs more trainings after it: it is kept.
            with mock.patch("accelerate.state.PartialState.destroy_process_group"):
                code = hfssl_main(["train", str(REPO / recipe_path), "--output-dir", str(out_dir), *cli, *COMMON,
                                   *overrides, *(extra or [])])
            assert code == 0, f"hfssl train exited with {code}"
    finally:
        trainer_logger.removeHandler(handler)
    state = AcceleratorState()
    return {"losses": {step: logs["train/loss"] for step, logs in sorted(handler.steps.items())},
            "features": probe.features, "fsdp_units": probe.units, "strategy": state.distributed_type.value,
            "is_fsdp2": bool(state.is_fsdp2), "seconds": time.perf_counter() - start}


def main(out_dir: str) -> None:
    import torch.distributed as dist

    from hfssl.settings import RecipeError

    torch.set_num_threads(1)
    out = Path(out_dir)
    results: dict[str, Any] = {}
    for method in METHODS:
        results[f"{method}/ddp"] = train_once(method, "ddp", out / "ddp" / method)
        # MAE under FSDP2 through ``hfssl train``: the gathered model is also exported and carded.
        results[f"{method}/fsdp2"] = train_once(method, "fsdp2", out / "fsdp2" / method,
                                                cli=[] if method == "mae" else None,
                                                extra=["train.checkpoint_every=2"] if method == "dino" else [])
    results["dino/fsdp2-layers"] = train_once("dino", "fsdp2-layers", out / "fsdp2-layers" / "dino")
    # bf16 autocast (Accelerate's bf16 on CPUs): FSDP2 computes in the dtypes DDP does, the teacher and centre too.
    for strategy in ("ddp", "fsdp2"):
        results[f"dino/{strategy}-bf16"] = train_once("dino", strategy, out / f"{strategy}-bf16" / "dino",
                                                      extra=["train.mixed_precision=bf16"])
    rank = dist.get_rank()

    # Exact resume under FSDP2: DINO again from its sharded step-2 checkpoint, in a copy of the run.
    resumed = out / "fsdp2-resumed" / "dino"
    if rank == 0:
        shutil.copytree(out / "fsdp2" / "dino", resumed)
        (resumed / "model.safetensors").unlink()
    dist.barrier()
    results["dino/fsdp2-resumed"] = train_once(
        "dino", "fsdp2", resumed, cli=["--resume-from", str(resumed / "checkpoints" / "step-00000002")],
        extra=["train.checkpoint_every=2"])

    # A checkpoint resumes only under the strategy that wrote it (sharded or whole files): the other is refused.
    from hfssl.errors import ResumeError
    from hfssl.recipe import load_recipe
    from hfssl.training.trainer import train

    refusals = {}
    for name, run_strategy, written_by in (("fsdp2-under-ddp", "ddp", "fsdp2"), ("ddp-under-fsdp2", "fsdp2", "ddp")):
        use_strategy(run_strategy)
        checkpoint = out / written_by / "dino" / "checkpoints" / f"step-{STEPS:08d}"
        try:
            train(load_recipe(REPO / METHODS["dino"][0], [*COMMON, *METHODS["dino"][1]]), out / written_by / "dino",
                  resume=str(checkpoint))
            refusals[name] = None
        except ResumeError as error:
            refusals[name] = str(error)
    results["resume_refusals"] = refusals

    # The finite-weights check reads each process's shards, and all processes stop: NaN on process 0 only.
    from hfssl.errors import NonFiniteError

    use_strategy("fsdp2")
    poisoned = out / "fsdp2" / "mae-nan"
    try:
        train(load_recipe(REPO / METHODS["mae"][0], [*COMMON, *METHODS["mae"][1], "train.max_steps=1"]), poisoned,
              callbacks=[PoisonShard()])
        results["nonfinite"] = None
    except NonFiniteError as error:
        results["nonfinite"] = str(error)
    dist.barrier()
    results["nonfinite_saved"] = sorted([path.name for path in poisoned.glob("checkpoints/step-*")]
                                        + [path.name for path in poisoned.glob("*.safetensors")])

    # A ResNet (BatchNorm) backbone is refused under FSDP2 before the run folder is touched.
    refused = out / "fsdp2" / "simclr"
    use_strategy("fsdp2")
    try:
        train(load_recipe(REPO / "recipes" / "simclr" / "digits.yaml", COMMON), refused)
        results["refusal"] = None
    except RecipeError as error:
        results["refusal"] = str(error)
    dist.barrier()  # the main process has released the folder's lock
    results["refused_folder"] = sorted(path.name for path in refused.iterdir()) if refused.exists() else []
    results["rank"] = rank
    torch.save(results, out / f"sharding_rank{rank}.pt")
    dist.barrier()
