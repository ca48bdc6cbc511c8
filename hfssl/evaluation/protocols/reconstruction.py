"""``reconstruction``: held-out reconstruction error of a reconstruction method (autoencoders, colorization,
inpainting, MAE) on the test split.

The test split goes through the run's evaluation transform (clean, normalised images, no augmentation) in
batches of ``batch_size``; the model's ``reconstruction`` capability (``get_reconstructions(pixel_values,
generator)``) corrupts each batch as in training (noise, masks: drawn from one generator seeded with ``seed``
on the model's device, batch after batch, so ``seed`` and ``batch_size`` fix the corruption) and
reconstructs it. Two numbers, over the mask region when the method's loss covers only one
(:func:`hfssl.reconstruction.reconstruction_errors`):

* ``mse``: the per-pixel mean squared error in the space the method's loss compares (normalised pixels for
  the autoencoders), averaged over images: the held-out value of the training loss's reconstruction term;
* ``psnr``: the peak signal-to-noise ratio in dB of the displayed reconstruction (in [0, 1]) against the
  displayed original, ``10 log10(1 / mse)`` per image, averaged over images; comparable across methods
  whose losses live in different spaces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hfssl.evaluation.context import EvaluationContext
from hfssl.evaluation.features import iter_image_batches
from hfssl.evaluation.protocols import IMAGE, Metric, Protocol, ProtocolCard, Rows, register_protocol
from hfssl.reconstruction import Reconstruction, reconstruction_errors
from hfssl.registry import RECONSTRUCTION
from hfssl.settings import RecipeError

#: The protocol's own metrics (not percentages).
MSE = Metric("mse", "mse", "reconstruction MSE", False)
PSNR = Metric("psnr", "psnr", "PSNR (dB)", False)


@dataclass
class ReconstructionSettings:
    """``eval.reconstruction``: the seed of the generator that corrupts the held-out images, and the images per
    batch (the generator is drawn from batch after batch, so both fix the corruption)."""

    seed: int = 0
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise RecipeError(f"eval.reconstruction.batch_size must be >= 1, got {self.batch_size!r}")


@torch.no_grad()
def run_reconstruction(context: EvaluationContext, settings: ReconstructionSettings) -> Rows:
    """Mean per-image MSE and PSNR over the whole test split (see the module docstring)."""
    splits = context.image_splits()
    _, _, transform, device, model = context.image_encoder()
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    mse_sum, psnr_sum, examples, masked = 0.0, 0.0, 0, False
    try:
        for pixels, _ in iter_image_batches(splits.test, settings.batch_size):
            pixel_values = transform(torch.from_numpy(pixels).to(device)).to(device)
            result = model.get_reconstructions(pixel_values, generator)
            if not isinstance(result, Reconstruction):
                raise ValueError(f"{type(model).__name__}.get_reconstructions must return a "
                                 f"hfssl.reconstruction.Reconstruction, got {type(result).__name__}")
            mse, psnr = reconstruction_errors(result, transform.mean, transform.std)
            mse_sum += float(mse.double().sum())
            psnr_sum += float(psnr.double().sum())
            examples += int(mse.shape[0])
            masked = masked or result.mask is not None
    finally:
        model.train(was_training)
    if not examples:
        raise ValueError(f"the test split of {splits.source!r} is empty: no images to reconstruct")
    return [{"features": "model", "split": "test", "seed": settings.seed, "batch_size": settings.batch_size,
             "region": "mask" if masked else "image", "examples": examples,
             "mse": mse_sum / examples, "psnr": psnr_sum / examples}]


RECONSTRUCTION_PROTOCOL = register_protocol(Protocol(
    "reconstruction", (RECONSTRUCTION,), run_reconstruction, ReconstructionSettings,
    "held-out reconstruction error (per-pixel MSE in the loss's space, PSNR of the images) on the test split, fixed seed",
    data=IMAGE, held_out=True,
    card=ProtocolCard("Reconstruction", "**Reconstruction**: the model's own corruption (noise, masks, a removed "
                      "region, greyscale; fixed seed) applied to the clean test images and reconstructed; MSE: "
                      "per-pixel mean squared error in the space the training loss compares (normalised pixels "
                      "unless the method says otherwise), over the region the loss covers; PSNR: "
                      "10 log10(1 / MSE) in dB on the images in [0, 1], averaged over images (higher is better).",
                      "other", "other", metrics=(MSE, PSNR), setting_labels={"region": "region"},
                      bookkeeping=("examples",))))
