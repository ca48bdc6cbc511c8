"""The autoencoder family (issue 22): each loss against its formula on fixed tensors (closed-form Gaussian KL, the
sparsity penalties, the contractive penalty against torch.autograd.functional.jacobian), the noise (seeded, the
generator untouched when off, only in training views), the input builders, exact resume, and one real run of the
VAE through the whole pipeline (the reconstruction protocol, the triplets and prior samples in the card)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfssl.losses.reconstruction import (contractive_penalty, gaussian_kl, gaussian_nll, kl_sparsity, l1_sparsity,
                                         squared_error)
from hfssl.models.autoencoder import AutoencoderInputs, VAEConfig
from hfssl.pipeline import run as run_pipeline
from hfssl.recipe import load_recipe
from hfssl.registry import get_method
from hfssl.settings import RecipeError
from hfssl.training.trainer import train
from hfssl.views import ViewsConfig, build_eval_transform, build_views
from hfssl.views.noise import NoiseSettings, add_noise, add_noise_normalized
from tiny import tiny_inputs, tiny_model

REPO = Path(__file__).resolve().parents[3]
FAST = ["train.progress_bar=false", "train.trackers=[]", "train.knn_every=null", "train.mixed_precision=no"]
TINY_DIGITS_RESNET = "{model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, " \
                     "hidden_sizes: [8, 16], depths: [1, 1]}"
SMALL_DECODER = ["model.decoder_hidden_size=16"]


def _fixed(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------- losses against their formulas


def test_gaussian_kl_is_the_closed_form_of_torch_distributions():
    mean, logvar = _fixed(5, 7, seed=1), _fixed(5, 7, seed=2)
    posterior = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(dim=1).mean()
    torch.testing.assert_close(gaussian_kl(mean, logvar), expected)
    assert float(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4))) == 0.0  # the prior itself


def test_gaussian_nll_squared_error_and_l1_against_loops():
    reconstruction, target = _fixed(3, 1, 4, 4, seed=3), _fixed(3, 1, 4, 4, seed=4)
    per_image = [sum(float(a - b) ** 2 for a, b in zip(reconstruction[i].flatten(), target[i].flatten()))
                 for i in range(3)]
    assert float(gaussian_nll(reconstruction, target, std=0.5)) == pytest.approx(sum(per_image) / 3 / (2 * 0.25))
    assert float(squared_error(reconstruction, target)) == pytest.approx(sum(per_image) / (3 * 16))
    code = _fixed(4, 6, seed=5)
    assert float(l1_sparsity(code)) == pytest.approx(sum(abs(float(v)) for v in code.flatten()) / 4)


def test_kl_sparsity_against_the_per_unit_formula():
    code = torch.sigmoid(_fixed(8, 5, seed=6))
    rho = 0.05
    expected = 0.0
    for unit in range(5):
        rho_hat = float(code[:, unit].mean())
        expected += rho * math.log(rho / rho_hat) + (1 - rho) * math.log((1 - rho) / (1 - rho_hat))
    assert float(kl_sparsity(code, rho)) == pytest.approx(expected)
    assert float(kl_sparsity(torch.full((4, 3), rho, dtype=torch.float64), rho)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="sparsity target"):
        kl_sparsity(code, 1.0)


def _tiny_encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3),
                               torch.nn.Sigmoid()).double()


def test_contractive_penalty_is_the_jacobian_frobenius_norm_exactly_and_in_expectation():
    encoder = _tiny_encoder()
    inputs = _fixed(4, 3, 2, 2, seed=7).requires_grad_(True)
    code = encoder(inputs)
    expected = torch.stack([torch.autograd.functional.jacobian(lambda x: encoder(x.unsqueeze(0))[0], inputs[i])
                            .pow(2).sum() for i in range(4)]).mean()
    exact = contractive_penalty(code, inputs)
    torch.testing.assert_close(exact, expected)
    exact.backward()  # the penalty is trained: it has a graph to the encoder's weights
    assert encoder[1].weight.grad is not None and torch.isfinite(encoder[1].weight.grad).all()
    projections = torch.randn(2000, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    estimate = contractive_penalty(encoder(inputs), inputs, projections)
    assert float(estimate.detach()) == pytest.approx(float(expected.detach()), rel=0.1)  # unbiased: E ||J^T v||^2 = ||J||_F^2
    with pytest.raises(ValueError, match="projections must be"):
        contractive_penalty(encoder(inputs), inputs, projections[:, :2])


def test_vae_loss_is_the_elbo_with_the_scheduled_kl_weight():
    model = tiny_model("vae", beta=2.0, kl_warmup_fraction=0.5).eval()
    inputs = tiny_inputs("vae")
    model.on_train_step_start(0, {"kl_weight": 0.7})
    outputs = model(**inputs)
    mean, logvar = model.posterior(inputs["pixel_values"])
    reconstruction = model.decode(mean + torch.exp(0.5 * logvar) * inputs["noise"])
    nll = ((reconstruction - inputs["pixel_values"]) ** 2).flatten(1).sum(1).mean() / (2 * 0.5)
    kl = (-0.5 * (1 + logvar - mean ** 2 - logvar.exp()).sum(1)).mean()
    torch.testing.assert_close(outputs.kl_loss, kl.detach())
    torch.testing.assert_close(outputs.loss, nll + 0.7 * kl)
    schedule = model.schedules()["kl_weight"]  # 0 -> beta over half of training, then beta
    assert [schedule(step, 10) for step in (0, 5, 9)] == [0.0, 2.0, 2.0]
    assert schedule(2, 10) == pytest.approx(0.8)
    # the exported encoder's pooled features are the posterior mean
    torch.testing.assert_close(model.get_embeddings(inputs["pixel_values"]), mean)
    with pytest.raises(ValueError, match="leave bottleneck_dim unset"):
        VAEConfig(bottleneck_dim=8)


def test_sparse_and_contractive_penalties_are_added_with_their_weights_and_logged_apart():
    sparse = tiny_model("sparse_autoencoder", sparsity_weight=0.5).eval()
    outputs = sparse(**tiny_inputs("sparse_autoencoder"))
    torch.testing.assert_close(outputs.sparsity_loss, kl_sparsity(outputs.code, 0.05).detach())
    torch.testing.assert_close(outputs.loss, outputs.reconstruction_loss + 0.5 * outputs.sparsity_loss)
    l1 = tiny_model("sparse_autoencoder", sparsity="l1").eval()
    outputs = l1(**tiny_inputs("sparse_autoencoder"))
    assert bool((outputs.code >= 0).all())  # ReLU units
    torch.testing.assert_close(outputs.sparsity_loss, outputs.code.abs().sum(1).mean().detach())
    contractive = tiny_model("contractive_autoencoder", contractive_estimator="exact").eval()
    outputs = contractive(**tiny_inputs("contractive_autoencoder"))
    torch.testing.assert_close(outputs.loss, outputs.reconstruction_loss + 0.1 * outputs.contractive_loss)


# ---------------------------------------------------------------- noise


def test_noise_is_seeded_off_draws_nothing_and_has_its_strengths():
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    settings = NoiseSettings(gaussian_std=0.2, salt_pepper=0.1, masking=0.3)
    first = add_noise(images, settings, torch.Generator().manual_seed(1))
    torch.testing.assert_close(first, add_noise(images, settings, torch.Generator().manual_seed(1)), rtol=0, atol=0)
    assert not torch.equal(first, add_noise(images, settings, torch.Generator().manual_seed(2)))
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    assert add_noise(images, NoiseSettings(), generator) is images and torch.equal(generator.get_state(), state)
    masked = add_noise(images, NoiseSettings(masking=0.3), torch.Generator().manual_seed(4))
    zeroed = (masked == 0).all(dim=1).float().mean()  # all channels of a position together
    assert float(zeroed) == pytest.approx(0.3, abs=0.03)
    salted = add_noise(images, NoiseSettings(salt_pepper=0.2), torch.Generator().manual_seed(5))
    hit = ((salted == 0) | (salted == 1)).all(dim=1).float().mean()
    assert float(hit) == pytest.approx(0.2, abs=0.03)
    # normalised images: the noise is added in [0, 1] and the normalisation put back
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
    view = lambda t: torch.tensor(t).view(1, 3, 1, 1)  # noqa: E731
    normalised = (images - view(mean)) / view(std)
    noisy = add_noise_normalized(normalised, settings, mean, std, torch.Generator().manual_seed(1))
    torch.testing.assert_close(noisy * view(std) + view(mean), first)


def test_views_noise_keys_are_off_by_default_checked_and_never_in_the_eval_transform():
    assert not ViewsConfig().noise.active
    with pytest.raises(RecipeError, match="views.noise_masking must be a fraction"):
        ViewsConfig(noise_masking=1.5)
    pixels = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    plain = ViewsConfig(flip_prob=0.0, crop_scale=(1.0, 1.0), mean=(0.5,), std=(0.5,))
    noisy = ViewsConfig(flip_prob=0.0, crop_scale=(1.0, 1.0), mean=(0.5,), std=(0.5,), noise_masking=0.5)
    for kind in ("single_view", "multi_view"):
        clean = build_views(kind, plain, 16, 1)(pixels, torch.Generator().manual_seed(0))["pixel_values"]
        first = build_views(kind, noisy, 16, 1)(pixels, torch.Generator().manual_seed(0))["pixel_values"]
        again = build_views(kind, noisy, 16, 1)(pixels, torch.Generator().manual_seed(0))["pixel_values"]
        assert torch.equal(first, again) and not torch.equal(first, clean)
        assert float((first == -1.0).float().mean()) > 0.4  # masked pixels: 0 in [0, 1], -1 normalised
    torch.testing.assert_close(build_eval_transform(noisy, 16, 1)(pixels), build_eval_transform(plain, 16, 1)(pixels))


def _recipe(method: str, *overrides: str):
    return load_recipe(REPO / "recipes" / method / "digits.yaml",
                       [*FAST, f"model.backbone_config={TINY_DIGITS_RESNET}", *SMALL_DECODER, *overrides])


def test_denoising_builder_corrupts_the_clean_view_and_the_model_reconstructs_the_clean_image():
    recipe = _recipe("denoising_autoencoder")
    builder = AutoencoderInputs(recipe)
    pixels = torch.randint(0, 256, (6, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = builder({"pixels": pixels}, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    clean = build_views("single_view", recipe.views, 16, 1)(pixels, generator)["pixel_values"]
    corrupted = add_noise_normalized(clean, builder.config.noise, recipe.views.mean, recipe.views.std, generator)
    assert torch.equal(inputs["target_pixel_values"], clean) and torch.equal(inputs["pixel_values"], corrupted)
    # the recipe is refused when views.noise_* would corrupt the target as well
    with pytest.raises(RecipeError, match="leave views.noise_\\* at 0"):
        get_method("denoising_autoencoder").check_recipe(_recipe("denoising_autoencoder", "views.noise_masking=0.2"))
    with pytest.raises(RecipeError, match="model.image_size is set from the recipe's data"):
        get_method("autoencoder").check_recipe(_recipe("autoencoder", "model.image_size=16"))


def test_denoising_resume_is_bit_exact(tmp_path):
    """6 steps uninterrupted, and again from the step-3 checkpoint: the same weights (views and noise are drawn from
    the step's generator, so the resumed run corrupts the same pixels)."""
    recipe = _recipe("denoising_autoencoder", "train.batch_size=32", "train.max_steps=6", "train.checkpoint_every=3",
                     "eval.protocols=[]")
    full = train(recipe, tmp_path / "full")
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(full.output_dir / "checkpoints" / "step-00000003", resumed_dir / "checkpoints" / "step-00000003")
    train(recipe, resumed_dir, resume=True)
    expected, actual = load_file(tmp_path / "full" / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_a_vae_run_evaluates_its_reconstructions_and_draws_them_in_its_card(tmp_path):
    """The whole pipeline on digits (a tiny ResNet, 12 steps): the reconstruction protocol's row, the triplets and
    the prior samples in the card of the reconstruction family, the exported encoder's features."""
    recipe = _recipe("vae", "train.batch_size=64", "train.max_steps=12", "eval.protocols=[reconstruction]")
    run_pipeline(recipe, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    (row,) = [entry for entry in results["results"] if entry["protocol"] == "reconstruction"]
    assert row["examples"] == 360 and row["region"] == "image" and row["mse"] > 0 and 0 < row["psnr"] < 100
    card = (tmp_path / "run" / "README.md").read_text()
    for expected in ("images/reconstruction_triplets.png", "images/prior_samples.png", "encoder + decoder",
                     "- reconstruction\n", "reconstruction MSE", "the clean image: no corruption"):
        assert expected in card, expected
