"""Shared tests that every registered method passes (STYLE.md "Tests")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

import hfssl
from hfssl.evaluation.online import LinearProbe, untouched_model
from hfssl.registry import IMAGE_FEATURES, METHODS
from hfssl.views.config import ViewsConfig
from hfssl.views.generators import EvalTransform
from tiny import TINY, TESTS_DIR, tiny_inputs, tiny_model, tiny_source

METHOD_NAMES = sorted(METHODS)
IMAGE_METHOD_NAMES = sorted(name for name, spec in METHODS.items() if spec.modality == "image")


def _channels_override(method: str, channels: int) -> dict:
    """Tiny config overrides for a 1-channel backbone (the digits and Fashion-MNIST recipes)."""
    if channels == 3:
        return {}
    from tiny import TINY

    backbone = dict(TINY[method][0]["backbone_config"], num_channels=channels)
    return {"backbone_config": backbone}


def _takes_lab(method: str) -> bool:
    return getattr(METHODS[method].config_class(**TINY[method][0]), "encoder_input", "rgb") != "rgb"


FRESH_PROCESS_SCRIPT = """
import json, sys, traceback, torch
from transformers import AutoModel, AutoImageProcessor, pipeline
from PIL import Image
reports = {}
for key, folder in json.loads(sys.argv[1]).items():
    try:
        model = AutoModel.from_pretrained(folder + "/encoder").eval()
        processor = AutoImageProcessor.from_pretrained(folder + "/encoder")
        data = torch.load(folder + "/io.pt")
        images = [Image.fromarray(array.numpy()) for array in data["pixels"]]  # "L" images when grey
        inputs = processor(images=images, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**inputs)
        out = hidden.pooler_output if hidden.last_hidden_state.ndim == 4 else hidden.last_hidden_state[:, 0]
        out = out.flatten(1)
        features = pipeline("image-feature-extraction", model=folder + "/encoder")(images[0])
        reports[key] = {"max_diff": (out - data["expected"]).abs().max().item(), "pipeline_ok": len(features) > 0}
    except Exception:
        reports[key] = {"error": traceback.format_exc()[-3000:]}
for report in reports.values():
    report["hfssl_imported"] = "hfssl" in sys.modules
print(json.dumps(reports))
"""


@pytest.fixture(scope="module")
def fresh_process_reports(tmp_path_factory) -> dict[str, dict]:
    """Every image method's tiny encoder, exported for 3- and 1-channel input, loaded by one fresh process
    without hfssl (one interpreter start for all of them instead of one each); a failure is reported
    against its own method and channel count."""
    from hfssl.export import export_encoder

    root = tmp_path_factory.mktemp("exports")
    folders, reports = {}, {}
    for method in IMAGE_METHOD_NAMES:
        if _takes_lab(method):
            continue
        for channels in (3, 1):
            key, folder = f"{method}-{channels}", root / f"{method}-{channels}"
            try:
                model = tiny_model(method, **_channels_override(method, channels)).eval()
                export_encoder(model, folder / "encoder", image_size=16, mean=(0.5,) * channels,
                               std=(0.25,) * channels, channels=channels)
                shape = (2, 16, 16, 3) if channels == 3 else (2, 16, 16)
                pixels = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
                with torch.no_grad():
                    as_batch = pixels.permute(0, 3, 1, 2) if channels == 3 else pixels.unsqueeze(1)
                    expected = model.get_embeddings((as_batch.float() / 255 - 0.5) / 0.25)
                torch.save({"pixels": pixels, "expected": expected}, folder / "io.pt")
                folders[key] = str(folder)
            except Exception as error:  # reported by this method's own test
                reports[key] = {"error": f"export in the test process failed: {error!r}"}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS_SCRIPT, json.dumps(folders)], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    reports.update(json.loads(result.stdout.strip().splitlines()[-1]))
    return reports


def test_every_registered_method_has_a_tiny_config():
    missing = [name for name in METHOD_NAMES if name not in TINY]
    assert not missing, (f"add tiny configs for {missing}: tests/models/<method>/tiny_<method>.py calling "
                         "tiny.register_tiny(method, config_kwargs, inputs_factory)")


def test_every_tiny_config_names_a_registered_method_and_lives_in_its_folder():
    """A tiny config for a name hfssl does not know (a typo) would be tested by nothing; one registered from
    another method's folder would be found where nobody looks for it. The folder is the method's package
    (``hfssl/models/<folder>/``): one package may register several methods (the five autoencoders), whose
    tiny configs then live in ``tests/models/<folder>/tiny_<folder>.py``."""
    unknown = sorted(set(TINY) - set(METHODS))
    assert not unknown, f"tiny configs for methods hfssl does not register: {unknown}"
    misplaced = []
    for name in METHOD_NAMES:
        folder = METHODS[name].model_class.__module__.split(".")[2]  # hfssl.models.<folder>.modeling_<...>
        expected = TESTS_DIR / "models" / folder / f"tiny_{folder}.py"
        if tiny_source(name) != expected:
            misplaced.append((name, str(tiny_source(name)), str(expected)))
    assert not misplaced, misplaced


@pytest.mark.parametrize("method", METHOD_NAMES)
class TestEveryMethod:
    def test_loss_is_a_finite_scalar(self, method):
        model = tiny_model(method)
        outputs = model(**tiny_inputs(method))
        assert outputs.loss.ndim == 0
        assert torch.isfinite(outputs.loss)
        assert list(outputs.keys())[0] == "loss"

    def test_every_trainable_parameter_gets_a_gradient_and_teachers_none(self, method):
        model = tiny_model(method)
        model(**tiny_inputs(method)).loss.backward()
        teacher = model.teacher_parameter_names()
        for name, parameter in model.named_parameters():
            if name in teacher:
                assert not parameter.requires_grad, f"teacher parameter {name} is trainable"
                assert parameter.grad is None, f"teacher parameter {name} got a gradient"
            elif parameter.requires_grad:
                assert parameter.grad is not None, f"{name} got no gradient"
                grad = parameter.grad.to_dense() if parameter.grad.is_sparse else parameter.grad  # word2vec: sparse
                assert torch.isfinite(grad).all(), f"{name} has a non-finite gradient"

    def test_config_is_registered_and_prefixed(self, method):
        spec = METHODS[method]
        assert spec.config_class.model_type == f"hfssl_{method}"
        assert isinstance(AutoConfig.for_model(spec.config_class.model_type), spec.config_class)

    def test_save_and_auto_round_trip(self, method, tmp_path):
        model = tiny_model(method).eval()
        model.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").is_file()
        for auto in (AutoModel, AutoModelForPreTraining):
            loaded = auto.from_pretrained(tmp_path).eval()
            assert type(loaded) is type(model)
            for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
                assert torch.equal(a, b), name


@pytest.mark.parametrize("method", IMAGE_METHOD_NAMES)
class TestEveryImageMethod:
    def test_embeddings_shape(self, method):
        model = tiny_model(method).eval()
        inputs = tiny_inputs(method)
        pixel_values = inputs["pixel_values"]
        if pixel_values.ndim == 5:
            pixel_values = pixel_values[:, 0]
        with torch.no_grad():
            embeddings = model.get_embeddings(pixel_values)
        assert embeddings.shape[0] == pixel_values.shape[0]
        assert embeddings.ndim == 2

    @pytest.mark.parametrize("channels", [3, 1])
    def test_exported_encoder_loads_without_hfssl(self, method, channels, fresh_process_reports):
        """The encoder loads and runs in plain transformers (AutoModel, processor, pipeline) in a fresh
        process, and gives the model's own embeddings. Grey models are exported for RGB input."""
        if _takes_lab(method):
            pytest.skip(f"{method}'s encoder takes CIE Lab, which no image processor computes from RGB: "
                        f"tests/models/{method}/ feed its own export as its model card says")
        report = fresh_process_reports[f"{method}-{channels}"]
        assert "error" not in report, report.get("error")
        assert report["hfssl_imported"] is False
        assert report["pipeline_ok"] is True
        assert report["max_diff"] < 1e-4, report


IMAGE_FEATURE_METHOD_NAMES = sorted(name for name, spec in METHODS.items() if IMAGE_FEATURES in spec.provides)


@pytest.mark.parametrize("method", IMAGE_FEATURE_METHOD_NAMES)
def test_the_online_linear_probe_learns_without_touching_the_model(method):
    """What the online linear probe does each step (``hfssl.evaluation.online``): features of clean uint8 images
    through the evaluation transform and ``get_embeddings`` in :func:`untouched_model`, then one probe step.
    After it the model in training mode has the same parameters, gradients (of its own SSL loss), buffers
    (batch-norm statistics) and mode, and the global random stream draws what it would have; the probe moved."""
    model = tiny_model(method).train()
    model(**tiny_inputs(method)).loss.backward()
    parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    rng = torch.get_rng_state()

    pixels = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, -1, 1, 0])
    transform = EvalTransform(ViewsConfig(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)), 16, 3)
    with untouched_model(model, torch.device("cpu")):
        features = model.get_embeddings(transform(pixels))
    assert features.ndim == 2 and features.shape[0] == 6 and not features.requires_grad
    probe = LinearProbe(features.shape[1], 3, lr=0.1, weight_decay=0.0, device="cpu")
    logs = probe.step([features], [labels])
    assert set(logs) == {"train_loss", "train_top1"} and torch.isfinite(torch.tensor(logs["train_loss"]))
    assert probe.classifier.weight.abs().sum() > 0, "the probe did not move"

    assert model.training
    assert torch.equal(torch.get_rng_state(), rng), "the probe's forward drew from the global random stream"
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, parameters[name]), f"parameter {name} changed"
        assert (parameter.grad is None) == (name not in gradients), f"gradient of {name} appeared or vanished"
        if parameter.grad is not None:
            assert torch.equal(parameter.grad, gradients[name]), f"gradient of {name} changed"
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name]), f"buffer {name} changed"
