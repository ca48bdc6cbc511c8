"""SimSiam, VICReg and Barlow Twins: configs, what the models compute around their losses, the
stop-gradient, and a short real run of each that must not collapse.

The losses themselves are checked against element-by-element loops in tests/losses/; the
two-process global-batch equivalence of VICReg and Barlow Twins in tests/test_distributed.py; the
shared contract (gradients, save/load, export) in tests/models/test_common.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hfssl.evaluation.features import extract_features_with
from hfssl.losses import BarlowTwinsLoss, VICRegLoss
from hfssl.models.barlow_twins import BarlowTwinsConfig
from hfssl.models.simsiam import SimSiamConfig
from hfssl.models.vicreg import VICRegConfig
from hfssl.pipeline import run
from hfssl.recipe import load_recipe
from hfssl.training.monitor import effective_rank
from hfssl.views import build_eval_transform
from tiny import tiny_inputs, tiny_model

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- configs


def test_defaults_follow_the_papers() -> None:
    simsiam = SimSiamConfig()
    assert (simsiam.projection_hidden_dim, simsiam.projection_dim, simsiam.projection_num_layers,
            simsiam.prediction_hidden_dim) == (2048, 2048, 3, 512)
    vicreg = VICRegConfig()
    assert (vicreg.projection_hidden_dim, vicreg.projection_dim, vicreg.projection_num_layers) == (8192, 8192, 3)
    assert (vicreg.invariance_coefficient, vicreg.variance_coefficient, vicreg.covariance_coefficient,
            vicreg.variance_target, vicreg.variance_epsilon) == (25.0, 25.0, 1.0, 1.0, 1e-4)
    barlow = BarlowTwinsConfig()
    assert (barlow.projection_hidden_dim, barlow.projection_dim, barlow.projection_num_layers) == (8192, 8192, 3)
    assert barlow.off_diagonal_weight == 5e-3
    for config in (simsiam, vicreg, barlow):
        assert config.backbone_config.model_type == "resnet"


@pytest.mark.parametrize(("config_class", "key", "value"), [
    (SimSiamConfig, "projection_dim", 0),
    (SimSiamConfig, "projection_num_layers", 0),
    (SimSiamConfig, "prediction_hidden_dim", 0),
    (SimSiamConfig, "projection_hidden_dim", -4),
    (VICRegConfig, "invariance_coefficient", -1.0),
    (VICRegConfig, "variance_coefficient", -0.5),
    (VICRegConfig, "covariance_coefficient", -1e-3),
    (VICRegConfig, "variance_target", 0.0),
    (VICRegConfig, "variance_epsilon", 0.0),
    (VICRegConfig, "variance_epsilon", 2.0),
    (VICRegConfig, "projection_num_layers", 9),
    (BarlowTwinsConfig, "off_diagonal_weight", -5e-3),
    (BarlowTwinsConfig, "off_diagonal_weight", 2.0),
    (BarlowTwinsConfig, "projection_dim", 0),
])
def test_configs_reject_values_out_of_range(config_class, key: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"{key} must be in .*got {value!r}"):
        config_class(**{key: value})


# ---------------------------------------------------------------- models


def test_simsiam_target_branch_gets_no_gradient() -> None:
    """The encoder's gradient is exactly that of D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 (Algorithm 1),
    and differs from the gradient without the stop-gradient."""
    model = tiny_model("simsiam").double()
    pixel_values = tiny_inputs("simsiam", batch_size=6)["pixel_values"].double()
    output = model(pixel_values=pixel_values)
    grads = torch.autograd.grad(output.loss, list(model.parameters()))

    def manual_loss(stop_gradient: bool) -> torch.Tensor:
        flat = model.flatten_views(pixel_values)
        z = model.projector(model.get_embeddings(flat))
        p = model.predictor(z)
        z1, z2 = z[:6], z[6:]
        if stop_gradient:
            z1, z2 = z1.detach(), z2.detach()
        return -(F.cosine_similarity(p[:6], z2).mean() + F.cosine_similarity(p[6:], z1).mean()) / 2

    with_stop = torch.autograd.grad(manual_loss(True), list(model.parameters()))
    without_stop = torch.autograd.grad(manual_loss(False), list(model.parameters()))
    torch.testing.assert_close(output.loss, manual_loss(True), rtol=1e-12, atol=1e-12)
    for (name, _), grad, expected in zip(model.named_parameters(), grads, with_stop):
        torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12, msg=name)
    backbone_difference = max((a - b).abs().max().item() for (name, _), a, b
                              in zip(model.named_parameters(), grads, without_stop) if name.startswith("backbone."))
    assert backbone_difference > 1e-6


def test_simsiam_has_no_momentum_encoder_and_no_step_hook_state() -> None:
    model = tiny_model("simsiam")
    assert model.teacher_pairs == () and model.teacher_parameter_names() == set()
    assert model.schedules() == {}
    children = {name for name, _ in model.named_children()}
    assert children == {"backbone", "projector", "predictor", "criterion"}
    # The projector's output is batch-normalised without affine parameters (sec. 3), its Linear has no bias.
    assert isinstance(model.projector[-1], torch.nn.BatchNorm1d) and not model.projector[-1].affine
    assert model.projector[-2].bias is None


@pytest.mark.parametrize(("method", "terms"), [
    ("vicreg", ("invariance_loss", "variance_loss", "covariance_loss")),
    ("barlow_twins", ("on_diagonal_loss", "off_diagonal_loss")),
])
def test_outputs_log_each_term_and_recompute_from_the_projections(method: str, terms: tuple[str, ...]) -> None:
    model = tiny_model(method)
    output = model(**tiny_inputs(method, batch_size=8))
    assert list(output.keys())[: len(terms) + 1] == ["loss", *terms]
    assert output.embeddings.shape == (8, 32) and output.projections.shape == (8, 2, 16)
    z1, z2 = output.projections[:, 0], output.projections[:, 1]
    config = model.config
    if method == "vicreg":
        expected = VICRegLoss(config.invariance_coefficient, config.variance_coefficient,
                              config.covariance_coefficient)(z1, z2)
        recombined = (25 * output.invariance_loss + 25 * output.variance_loss + output.covariance_loss)
    else:
        expected = BarlowTwinsLoss(config.off_diagonal_weight)(z1, z2)
        recombined = output.on_diagonal_loss + 5e-3 * output.off_diagonal_loss
    for value, reference in zip([output[name] for name in ("loss", *terms)], expected):
        torch.testing.assert_close(value, reference)
    torch.testing.assert_close(output.loss, recombined)
    # The last Linear has no bias: the loss is invariant to a shift shared by both views.
    assert model.projector[-1].bias is None


# ---------------------------------------------------------------- collapse on a short real run

# The collapse monitor's effective rank (Roy & Vetterli 2007, uncentred) of the 128-dimensional
# backbone features of the 360 test digits is about 60 at initialisation, 1 for a fully collapsed
# encoder (every image mapped to one point) and a few for a dimensional collapse. After these 150
# steps (batch 64, about 7 epochs; the digits recipe otherwise unchanged) we measured SimSiam 71,
# VICReg 58 and Barlow Twins 57, and VICReg with its variance and covariance terms switched off
# (invariance only, the textbook collapse) 40. The threshold 50 sits between the two, so it fails a
# run whose anti-collapse term stops working, not only one whose features become constant.
# What so short a run cannot show: slow collapse through the projector alone (SimSiam without
# stop-gradient still measured 75 after 40 steps: it collapses its predictions first); that is
# caught by test_simsiam_target_branch_gets_no_gradient and the loss tests.
EFFECTIVE_RANK_THRESHOLD = 50.0
COLLAPSE_STEPS = 150
INVARIANCE_ONLY = ["model.variance_coefficient=0", "model.covariance_coefficient=0"]


def _short_run_effective_rank(method: str, overrides: list[str], output_dir: Path) -> float:
    recipe = load_recipe(REPO / "recipes" / method / "digits.yaml", [
        f"train.max_steps={COLLAPSE_STEPS}", "train.batch_size=64", "eval.protocols=[]", "train.trackers=[]",
        "train.progress_bar=false", "train.knn_every=null", *overrides])
    result = run(recipe, output_dir)
    assert result.steps == COLLAPSE_STEPS and result.final_loss is not None
    assert torch.isfinite(torch.tensor(result.final_loss))
    transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
    features, _ = extract_features_with(result.model.get_embeddings, transform, result.data.eval_test_dataset,
                                        model=result.model)
    assert features.shape == (360, 128)
    return effective_rank(torch.from_numpy(features))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simsiam", "vicreg", "barlow_twins"])
def test_short_digits_run_does_not_collapse(method: str, tmp_path: Path) -> None:
    rank = _short_run_effective_rank(method, [], tmp_path)
    assert rank > EFFECTIVE_RANK_THRESHOLD, f"{method}: effective rank {rank:.1f} after {COLLAPSE_STEPS} steps"


@pytest.mark.slow
def test_the_threshold_catches_vicreg_without_its_anti_collapse_terms(tmp_path: Path) -> None:
    """Control for the test above: the same run with only the invariance term falls below the threshold."""
    rank = _short_run_effective_rank("vicreg", INVARIANCE_ONLY, tmp_path)
    assert rank < EFFECTIVE_RANK_THRESHOLD, f"invariance-only VICReg kept effective rank {rank:.1f}"
