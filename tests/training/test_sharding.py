"""FSDP2 through Accelerate equals DDP on two CPU processes; what cannot be sharded is refused before any work.

One pair of gloo processes (tests/sharding_worker.py) trains DINO (ViT), MoCo v3 (ViT, BatchNorm heads), MAE,
BERT MLM, CLIP (ViT + BERT towers, its 0-d ``logit_scale``) and Barlow Twins (ViT, the LARS optimiser and
per-parameter gradient clipping, which read whole-parameter norms) for 3 steps under DDP and under FSDP2 with
the real engine, and resumes DINO under FSDP2. Tolerances: the losses logged at every step (gathered over the
processes) within 1e-6 relative, and the full gathered weights after the steps within 1e-6 absolute (float32:
FSDP2 reduce-scatters the gradients where DDP all-reduces them, so sums may be ordered differently; MoCo v3,
MAE and CLIP come out bit-identical here, DINO, MLM and Barlow Twins within 3e-7).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from hfssl.settings import RecipeError
from hfssl.training.sharding import check_strategy

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from torchrun import run_two_ranks  # noqa: E402

METHODS = ("dino", "moco_v3", "mae", "mlm", "clip", "barlow_twins")


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding")
    return out, run_two_ranks("sharding_worker", "main", out, "sharding_", timeout=600)


def weight_tolerance(name: str) -> float:
    """1e-6, except for attention key biases: softmax ignores a bias added to every key, so their true gradient is
    0 and what they get is rounding noise, whose order of summation differs between DDP and FSDP2 and between CPUs
    (AVX2 against AVX512); Adam turns that noise into steps of up to the learning rate's size (1.8e-6 seen on AVX2)."""
    return 1e-5 if name.endswith("attention.key.bias") else 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_fsdp2_equals_ddp_in_losses_and_gathered_weights(sharded_runs, method):
    out, ranks = sharded_runs
    ddp, fsdp2 = ranks[0][f"{method}/ddp"], ranks[0][f"{method}/fsdp2"]
    assert ddp["strategy"] == "MULTI_CPU" and not ddp["is_fsdp2"]
    assert fsdp2["strategy"] == "FSDP" and fsdp2["is_fsdp2"], "the FSDP2 config trained without FSDP"
    assert sorted(ddp["losses"]) == sorted(fsdp2["losses"]) == [1, 2, 3]
    for step, loss in ddp["losses"].items():
        assert fsdp2["losses"][step] == pytest.approx(loss, rel=1e-6), f"{method} step {step}"
    expected = load_file(str(out / "ddp" / method / "model.safetensors"))
    actual = load_file(str(out / "fsdp2" / method / "model.safetensors"))  # gathered on the main process
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert actual[name].shape == tensor.shape, f"{name}: {tuple(actual[name].shape)} != {tuple(tensor.shape)}"
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=weight_tolerance(name),
                                   msg=lambda m: f"{method} {name}: {m}")
    if method == "clip":
        assert actual["backbone.logit_scale"].dim() == 0, "CLIP's logit_scale is saved 0-d, as transformers has it"
    if method == "dino":
        assert not torch.equal(actual["teacher_backbone.embeddings.cls_token"],
                               actual["backbone.embeddings.cls_token"]), "the teacher is a moving average, not a copy"


def test_fsdp2_with_one_unit_per_transformer_block_equals_ddp(sharded_runs):
    """DINO with ``fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP`` (``ViTLayer``), as fsdp2_gpu.yaml suggests
    for large ViTs: the student's and the teacher's blocks are FSDP units of their own (2 + 2, and the root);
    the teacher, gathered block by block under no_grad, still follows its student exactly as under DDP."""
    out, ranks = sharded_runs
    ddp, layers = ranks[0]["dino/ddp"], ranks[0]["dino/fsdp2-layers"]
    assert ddp["fsdp_units"] == 0 and ranks[0]["dino/fsdp2"]["fsdp_units"] == 1 and layers["fsdp_units"] == 5
    for step, loss in ddp["losses"].items():
        assert layers["losses"][step] == pytest.approx(loss, rel=1e-6), f"step {step}"
    expected = load_file(str(out / "ddp" / "dino" / "model.safetensors"))
    actual = load_file(str(out / "fsdp2-layers" / "dino" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=weight_tolerance(name), msg=lambda m: f"{name}: {m}")


def test_fsdp2_in_bf16_equals_ddp_in_bf16(sharded_runs):
    """``train.mixed_precision=bf16``: the forward runs under the Accelerator's autocast as under DDP (not
    FSDP2's bf16 parameter policy, which fed bf16 logits and float32 centres to DINO's loss and failed), and
    a callback reading the weights is given a float32 copy (the bf16 compute copy failed in its convolution)."""
    out, ranks = sharded_runs
    ddp, fsdp2 = ranks[0]["dino/ddp-bf16"], ranks[0]["dino/fsdp2-bf16"]
    assert fsdp2["is_fsdp2"] and sorted(fsdp2["losses"]) == [1, 2, 3]
    assert ddp["losses"] != ranks[0]["dino/ddp"]["losses"], "bf16 trained in float32"
    for step, loss in ddp["losses"].items():
        assert fsdp2["losses"][step] == pytest.approx(loss, rel=1e-6), f"step {step}"
        for name, tensor in ddp["features"][step].items():
            assert fsdp2["features"][step][name].dtype == torch.float32
            torch.testing.assert_close(fsdp2["features"][step][name], tensor, rtol=0, atol=1e-5)
    expected = load_file(str(out / "ddp-bf16" / "dino" / "model.safetensors"))
    actual = load_file(str(out / "fsdp2-bf16" / "dino" / "model.safetensors"))
    for name, tensor in expected.items():
        assert actual[name].dtype == torch.float32
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("method", ("dino", "moco_v3", "clip"))
def test_features_of_the_sharded_model_outside_forward(sharded_runs, method):
    """A callback's ``get_embeddings`` / CLIP's ``get_image_features`` and ``get_text_features`` on the
    training model (sharded: all-gathered for the callback) equal DDP's, on both processes."""
    _, ranks = sharded_runs
    for rank in ranks:
        ddp, fsdp2 = rank[f"{method}/ddp"]["features"], rank[f"{method}/fsdp2"]["features"]
        assert sorted(ddp) == sorted(fsdp2) == [1, 2, 3]
        for step in ddp:
            for name, tensor in ddp[step].items():
                torch.testing.assert_close(fsdp2[step][name], tensor, rtol=0, atol=1e-5)


def test_fsdp2_resume_is_exact_and_checkpoints_are_sharded(sharded_runs):
    """DINO (EMA teacher, centre, last layer frozen for the first steps, scheduled weight decay) resumed
    with ``hfssl train --resume-from`` its sharded step-2 checkpoint ends bit-identical."""
    out, ranks = sharded_runs
    checkpoint = out / "fsdp2" / "dino" / "checkpoints" / "step-00000002"
    assert (checkpoint / "pytorch_model_fsdp_0" / ".metadata").is_file()
    assert (checkpoint / "optimizer_0" / ".metadata").is_file()
    assert not list(checkpoint.glob("model*.safetensors")), "the checkpoint holds the full model, not shards"
    for rank in ranks:  # each strategy reads only its own checkpoint layout: refused before any work
        assert "holds FSDP2 shards" in rank["resume_refusals"]["fsdp2-under-ddp"]
        assert "fsdp2_cpu_2proc.yaml" in rank["resume_refusals"]["fsdp2-under-ddp"]
        assert "written without FSDP2" in rank["resume_refusals"]["ddp-under-fsdp2"]
        assert "cpu_2proc.yaml" in rank["resume_refusals"]["ddp-under-fsdp2"]
    resumed = ranks[0]["dino/fsdp2-resumed"]
    assert sorted(resumed["losses"]) == [3] and resumed["is_fsdp2"]
    assert resumed["losses"][3] == ranks[0]["dino/fsdp2"]["losses"][3]
    expected = load_file(str(out / "fsdp2" / "dino" / "model.safetensors"))
    actual = load_file(str(out / "fsdp2-resumed" / "dino" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), f"{name} differs after resume"


def test_nonfinite_weights_in_one_shard_stop_every_process_before_any_save(sharded_runs):
    _, ranks = sharded_runs
    assert "mae.vit.embeddings.cls_token" in ranks[0]["nonfinite"], "process 0 holds the NaN shard: it names it"
    assert "on another process" in ranks[1]["nonfinite"], "process 1's shard is empty: it learns it from process 0"
    for rank in ranks:
        assert "non-finite values after step 1" in rank["nonfinite"]
        assert rank["nonfinite_saved"] == [], "weights were saved from non-finite shards"


def test_fsdp2_export_loads_in_plain_transformers(sharded_runs):
    from transformers import AutoModel

    out, _ = sharded_runs
    run = out / "fsdp2" / "mae"
    encoder, info = AutoModel.from_pretrained(run / "encoder", output_loading_info=True)
    assert type(encoder).__name__ == "ViTModel"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    exported, trained = load_file(str(run / "encoder" / "model.safetensors")), load_file(str(run / "model.safetensors"))
    name = "encoder.layer.0.attention.attention.query.weight"
    torch.testing.assert_close(exported[name], trained[f"mae.vit.{name}"], rtol=0, atol=0)
    assert (run / "README.md").is_file()


def test_a_batchnorm_backbone_is_refused_under_fsdp2_before_any_work(sharded_runs):
    out, ranks = sharded_runs
    for rank in ranks:
        message = rank["refusal"]
        assert message is not None, "SimCLR's ResNet trained under FSDP2"
        assert "BatchNorm" in message and "cpu_2proc.yaml" in message and "train.sync_batchnorm=true" in message
        assert rank["refused_folder"] == [], "the refused run wrote into its folder"


class _Launch(SimpleNamespace):
    """The two properties :func:`check_strategy` reads from an Accelerator, for the strategies this
    machine cannot start: DeepSpeed (not installed; the check must not need it) and FSDP version 1."""


def _tiny(method: str):
    from tiny import TINY
    from hfssl.registry import get_method

    spec = get_method(method)
    return spec.model_class(spec.config_class(**TINY[method][0]))


def test_deepspeed_refuses_an_ema_teacher_and_names_fsdp2():
    assert "deepspeed" not in sys.modules
    deepspeed = _Launch(distributed_type=DistributedType.DEEPSPEED, is_fsdp2=False)
    for method in ("dino", "moco_v3", "byol"):
        with pytest.raises(RecipeError, match=r"EMA teacher .*Use FSDP2 instead: accelerate launch --config_file "
                                              r"recipes/accelerate/fsdp2_"):
            check_strategy(_tiny(method), deepspeed, method)
    for method in ("mae", "mlm", "simclr", "clip"):
        check_strategy(_tiny(method), deepspeed, method)  # no teacher: left to DeepSpeed
    assert "deepspeed" not in sys.modules


def test_fsdp_version_1_is_refused():
    with pytest.raises(RecipeError, match="fsdp_version: 2"):
        check_strategy(_tiny("mae"), _Launch(distributed_type=DistributedType.FSDP, is_fsdp2=False), "mae")


def test_fsdp2_refusal_is_decided_by_the_backbone_modules_not_the_method():
    """MoCo v2 on its ResNet (shuffled BN) is refused, naming DDP with SyncBatchNorm; the same method on a ViT,
    and MoCo v3 on a ViT with BatchNorm in its heads, shard. ``train.sync_batchnorm`` and word2vec's sparse
    embeddings are refused with the DDP configs named."""
    from tiny import TINY, TINY_VIT
    from hfssl.registry import get_method

    fsdp2 = _fsdp2_launch("SHARDED_STATE_DICT")
    with pytest.raises(RecipeError, match=r"backbone has BatchNorm layers .*cpu_2proc\.yaml .*"
                                          r"train\.sync_batchnorm=true .*MoCo v2"):
        check_strategy(_tiny("moco"), fsdp2, "moco")
    spec = get_method("moco")
    vit_moco = spec.model_class(spec.config_class(**{**TINY["moco"][0], "backbone_config": TINY_VIT}))
    check_strategy(vit_moco, fsdp2, "moco")
    moco_v3 = _tiny("moco_v3")
    assert any(isinstance(module, torch.nn.BatchNorm1d) for module in moco_v3.modules()), "MoCo v3's heads have BN"
    check_strategy(moco_v3, fsdp2, "moco_v3")
    with pytest.raises(RecipeError, match=r"train\.sync_batchnorm=true is not supported under FSDP2.*cpu_2proc\.yaml"):
        check_strategy(moco_v3, fsdp2, "moco_v3", sync_batchnorm=True)
    with pytest.raises(RecipeError, match=r"sparse embeddings .*cpu_2proc\.yaml"):
        check_strategy(_tiny("word2vec"), fsdp2, "word2vec")
    with pytest.raises(RecipeError, match=r"fsdp_state_dict_type is FULL_STATE_DICT: set fsdp_state_dict_type: "
                                          r"SHARDED_STATE_DICT"):
        check_strategy(moco_v3, _fsdp2_launch("FULL_STATE_DICT"), "moco_v3")


def _fsdp2_launch(state_dict_type: str) -> _Launch:
    from torch.distributed.fsdp import StateDictType

    plugin = SimpleNamespace(state_dict_type=StateDictType[state_dict_type])
    return _Launch(distributed_type=DistributedType.FSDP, is_fsdp2=True, state=SimpleNamespace(fsdp_plugin=plugin))


def test_a_deepspeed_launch_on_cpu_processes_is_refused(monkeypatch, tmp_path):
    """Accelerate runs DeepSpeed on GPUs only: a DeepSpeed launch here (``ACCELERATE_USE_DEEPSPEED``, as
    ``accelerate launch`` exports it) would train without it, so the engine refuses it when it makes its
    Accelerator, before the run folder is written, naming the FSDP2 CPU config; no deepspeed package needed."""
    from hfssl.recipe import load_recipe
    from hfssl.training.trainer import train

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "mae" / "digits.yaml", ["train.max_steps=1"])
    with pytest.raises(RecipeError, match=r"asks for DeepSpeed.* on the CPU.*recipes/accelerate/fsdp2_cpu_2proc\.yaml"):
        train(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    assert "deepspeed" not in sys.modules
