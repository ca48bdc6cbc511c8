"""View generators: a uint8 batch on the training device -> the model's augmented inputs.

Pipeline of one view (SimCLR, Chen et al. 2020, appendix A; BYOL, Grill et al. 2020, appendix B),
every step vectorised over the batch with per-sample parameters from the caller's generator:

1. random resized crop (torchvision's RandomResizedCrop parameters) and horizontal flip, as one
   sampling grid and one ``grid_sample`` call; then, with probability ``rotation_prob``, a rotation by
   an angle drawn uniformly from ``rotation_degrees`` (multiples of 90 exact, other angles bilinear
   with black corners; :func:`hfssl.views.functional.rotate`);
2. colour jitter with probability ``color_jitter_prob``: brightness, contrast, saturation and hue
   in a random order per image (as torchvision and BYOL);
3. grayscale with probability ``grayscale_prob`` (output keeps C channels);
4. Gaussian blur with probability ``blur_prob`` (per view: ``blur_prob_per_view``), sigma uniform
   in ``blur_sigma``, kernel 10 % of the view side made odd (SimCLR), at least 3;
5. solarize with probability ``solarize_prob`` (per view: ``solarize_prob_per_view``), threshold 0.5;
6. noise (``noise_gaussian_std``, ``noise_salt_pepper``, ``noise_masking``; :mod:`hfssl.views.noise`), off by default;
7. normalise with ``mean`` / ``std``.

Local views of multi-crop (Caron et al. 2020) go through the same pipeline at
``local_crop_size`` with ``local_crop_scale`` and use the scalar ``blur_prob`` /
``solarize_prob``. ``single_view`` (MAE, He et al. 2022, sec. 4) is steps 1, 6 and 7 only (rotation
included when ``rotation_prob > 0``).
On 1-channel images saturation, hue and grayscale are identities (there is no colour to change).
An operation whose probability is 0 is skipped and draws nothing from the generator.

Seeding: every random number comes from the generator passed with the batch, in a fixed order
(global views, then local views; within a group crop, flip, rotation, jitter, grey, blur, solarize), so the
same seed on the same device type gives identical views. CPU and CUDA generators draw different
streams, so a seed gives different (equally valid) views on the two. Views are computed in
float32 with any enclosing autocast switched off.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hfssl.views.config import ViewsConfig
from hfssl.views.noise import add_noise
from hfssl.views import functional
from hfssl.views.parameters import bernoulli, sample_color_jitter, sample_crop_boxes, uniform

logger = logging.getLogger(__name__)

VIEW_KINDS = ("multi_view", "single_view")

MIN_CROP_SIZE = 4

# BYOL, appendix B: pixels at or above 0.5 (in [0, 1] units) are inverted.
SOLARIZE_THRESHOLD = 0.5


def _check_range(name: str, value: tuple[float, ...], low: float, high: float | None = None) -> None:
    if len(value) != 2 or not low < value[0] <= value[1] or (high is not None and value[1] > high):
        bound = f"{low} < low <= high" + (f" <= {high}" if high is not None else "")
        raise ValueError(f"views.{name} must be two numbers with {bound}, got {tuple(value)!r}")


def _check_normalisation(views: ViewsConfig, channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"view generators take 1- or 3-channel images, got channels={channels!r} (data.channels)")
    for name in ("mean", "std"):
        values = tuple(getattr(views, name))
        if len(values) != channels:
            example = "[0.5]" if channels == 1 else "[0.5, 0.5, 0.5]"
            raise ValueError(
                f"views.{name} has {len(values)} value(s) {values!r} but the images have {channels} channel(s); "
                f"give one value per channel, for example views.{name}={example}"
            )
    if any(value <= 0 for value in views.std):
        raise ValueError(f"views.std must be positive, got {tuple(views.std)!r}")


def _check_views(views: ViewsConfig, channels: int, crop_size: int) -> None:
    """Validate what ViewsConfig's own checks leave to the view generators."""
    _check_normalisation(views, channels)
    _check_range("crop_ratio", views.crop_ratio, 0.0)
    _check_range("blur_sigma", views.blur_sigma, 0.0)
    if crop_size < MIN_CROP_SIZE:
        raise ValueError(f"views.crop_size must be at least {MIN_CROP_SIZE} pixels, got {crop_size!r}")
    if views.num_local_views < 0:
        raise ValueError(f"views.num_local_views must be >= 0, got {views.num_local_views!r}")
    if views.num_local_views > 0 and views.local_crop_size < MIN_CROP_SIZE:
        raise ValueError(f"views.local_crop_size must be at least {MIN_CROP_SIZE} pixels, got {views.local_crop_size!r}")
    for name in ("brightness", "contrast", "saturation"):
        if getattr(views, name) < 0:
            raise ValueError(f"views.{name} must be >= 0, got {getattr(views, name)!r}")
    if not 0.0 <= views.hue <= 0.5:
        raise ValueError(f"views.hue must be in [0, 0.5] (turns of the colour wheel), got {views.hue!r}")
    for name in ("blur_prob_per_view", "solarize_prob_per_view"):
        values = getattr(views, name)
        if values is None:
            continue
        if len(values) != views.num_views:
            raise ValueError(
                f"views.{name} has {len(values)} value(s) {tuple(values)!r} but views.num_views is {views.num_views}; "
                "give one probability per view"
            )
        if any(not 0.0 <= value <= 1.0 for value in values):
            raise ValueError(f"views.{name} must hold probabilities in [0, 1], got {tuple(values)!r}")


def _check_pixels(pixels: torch.Tensor, channels: int, generator: torch.Generator | None = None) -> None:
    if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.uint8 or pixels.ndim != 4:
        description = f"{pixels.dtype} tensor of shape {tuple(pixels.shape)}" if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise ValueError(
            f"views take a uint8 batch of shape (batch, channels, height, width), got a {description}; "
            "image batches are {'pixels': uint8 (B, C, H, W)} (see hfssl.data)"
        )
    if pixels.shape[0] == 0:
        raise ValueError(f"views got an empty batch of shape {tuple(pixels.shape)}; batches need at least one image")
    if pixels.shape[1] != channels:
        raise ValueError(
            f"views were built for {channels}-channel images (data.channels) but the batch has shape {tuple(pixels.shape)}"
        )
    if generator is not None:
        device = torch.device(generator.device)
        same_index = device.index is None or pixels.device.index is None or device.index == pixels.device.index
        if device.type != pixels.device.type or not same_index:
            raise ValueError(
                f"the generator is on {device} but the pixels are on {pixels.device}; "
                "create it with torch.Generator(device=pixels.device)"
            )


def _full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Switch off an enclosing autocast: views are made and returned in float32 whatever the step's precision."""
    is_available = getattr(torch.amp, "is_autocast_available", lambda device_type: device_type in ("cpu", "cuda"))
    if is_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class ViewGroup:
    """Views of one size that go through the pipeline as one batch of ``B * count`` images.

    Attributes:
        size: output side. count: views per image. scale: crop area range.
        blur_probabilities / solarize_probabilities: one probability per view.
    """

    size: int
    count: int
    scale: tuple[float, float]
    blur_probabilities: tuple[float, ...]
    solarize_probabilities: tuple[float, ...]


class _ViewPipeline:
    """Validated settings and the per-view pipeline shared by the multi- and single-view generators."""

    def __init__(self, views: ViewsConfig, image_size: int, channels: int) -> None:
        self.views = views
        self.channels = channels
        self.image_size = image_size
        self.crop_size = views.crop_size or image_size
        _check_views(views, channels, self.crop_size)
        self.mean = tuple(float(value) for value in views.mean)
        self.std = tuple(float(value) for value in views.std)

    def _crop(self, images: torch.Tensor, group: ViewGroup, generator: torch.Generator) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` -> float ``(B * count, C, S, S)`` in [0, 1], sample-major (b, view)."""
        batch, channels, height, width = images.shape
        num = batch * group.count
        # Repeat the uint8 batch (cheap) before converting, so the float copy is made only once.
        source = images.unsqueeze(1).expand(batch, group.count, channels, height, width).reshape(num, channels, height, width)
        source = source.to(torch.float32).div_(255.0)
        boxes = sample_crop_boxes(generator, num, height, width, group.scale, tuple(self.views.crop_ratio))
        flip = bernoulli(generator, num, self.views.flip_prob) if self.views.flip_prob > 0 else None
        views = functional.resized_crop(source, boxes.top, boxes.left, boxes.height, boxes.width, group.size, flip)
        if self.views.rotation_prob > 0:
            views = functional.rotate(views, self._rotation_angles(generator, num, views.device))
        return views

    def _rotation_angles(self, generator: torch.Generator, num: int, device: torch.device) -> torch.Tensor:
        """``(N,)`` angles in degrees: one of ``views.rotation_degrees`` with probability ``rotation_prob``, else 0."""
        apply = bernoulli(generator, num, self.views.rotation_prob)
        angles = torch.tensor(self.views.rotation_degrees, dtype=torch.float32, device=device)
        choice = torch.randint(len(angles), (num,), generator=generator, device=device)
        return torch.where(apply, angles[choice], torch.zeros((), device=device))

    def _photometric(self, images: torch.Tensor, group: ViewGroup, generator: torch.Generator) -> torch.Tensor:
        """Colour jitter, grayscale, blur, solarize on ``(N, C, S, S)``, N ordered (b, view)."""
        views = self.views
        num = images.shape[0]
        colour = self.channels == 3
        strengths = (views.brightness, views.contrast) + ((views.saturation, views.hue) if colour else (0.0, 0.0))
        if views.color_jitter_prob > 0 and any(value > 0 for value in strengths):
            parameters = sample_color_jitter(generator, num, *strengths)
            apply = bernoulli(generator, num, views.color_jitter_prob)
            jittered = functional.color_jitter(
                images, parameters.factors, parameters.hue_delta, parameters.order, parameters.hue_indices
            )
            images = torch.where(apply[:, None, None, None], jittered, images)
        if views.grayscale_prob > 0 and colour:
            apply = bernoulli(generator, num, views.grayscale_prob)
            images = torch.where(apply[:, None, None, None], functional.rgb_to_grayscale(images).expand_as(images), images)
        if any(value > 0 for value in group.blur_probabilities):
            sigma = uniform(generator, (num,), *views.blur_sigma)
            apply = bernoulli(generator, num, self._per_sample(group.blur_probabilities, num, images.device))
            blurred = functional.gaussian_blur(images, sigma, functional.gaussian_kernel_size(group.size))
            images = torch.where(apply[:, None, None, None], blurred, images)
        if any(value > 0 for value in group.solarize_probabilities):
            apply = bernoulli(generator, num, self._per_sample(group.solarize_probabilities, num, images.device))
            # A threshold above 1 solarizes nothing: one pass instead of solarize + select.
            threshold = torch.where(apply, SOLARIZE_THRESHOLD, 2.0)
            images = functional.solarize(images, threshold)
        return images

    @staticmethod
    def _per_sample(probabilities: tuple[float, ...], num: int, device: torch.device) -> torch.Tensor:
        """Per-view probabilities -> ``(N,)`` for samples ordered (b, view)."""
        return torch.tensor(probabilities, dtype=torch.float32, device=device).repeat(num // len(probabilities))

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        """In place: ``images`` is always a fresh tensor made by the pipeline."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
        return images.sub_(mean).div_(std)

    def _group(self, images: torch.Tensor, group: ViewGroup, generator: torch.Generator, photometric: bool) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` -> normalised ``(B, count, C, S, S)``."""
        views = self._crop(images, group, generator)
        if photometric:
            views = self._photometric(views, group, generator)
        views = add_noise(views, self.views.noise, generator)  # views.noise_*: nothing drawn when off
        views = self._normalize(views)
        return views.reshape(images.shape[0], group.count, self.channels, group.size, group.size)


class MultiViewGenerator(_ViewPipeline):
    """Several augmented views of every image: SimCLR / BYOL, plus multi-crop local views (SwAV, DINO).

    Call with a uint8 batch ``(B, C, H, W)`` and a ``torch.Generator`` on the same device; returns
    ``{"pixel_values": (B, V, C, S, S)}`` float32 with ``V = num_views`` and
    ``S = crop_size or image_size``, plus ``{"local_pixel_values": (B, L, C, s, s)}`` when
    ``num_local_views = L > 0`` (``s = local_crop_size``). Global view ``i`` uses
    ``blur_prob_per_view[i]`` / ``solarize_prob_per_view[i]`` when set (BYOL: blur 1.0 / 0.1,
    solarize 0.0 / 0.2), else the scalar probabilities, which the local views always use.
    """

    def __init__(self, views: ViewsConfig, image_size: int, channels: int) -> None:
        super().__init__(views, image_size, channels)
        count = views.num_views
        self.global_views = ViewGroup(
            size=self.crop_size,
            count=count,
            scale=tuple(views.crop_scale),
            blur_probabilities=tuple(views.blur_prob_per_view or (views.blur_prob,) * count),
            solarize_probabilities=tuple(views.solarize_prob_per_view or (views.solarize_prob,) * count),
        )
        self.local_views = None
        if views.num_local_views > 0:
            self.local_views = ViewGroup(
                size=views.local_crop_size,
                count=views.num_local_views,
                scale=tuple(views.local_crop_scale),
                blur_probabilities=(views.blur_prob,) * views.num_local_views,
                solarize_probabilities=(views.solarize_prob,) * views.num_local_views,
            )
        logger.debug("built %r", self)

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        _check_pixels(pixels, self.channels, generator)
        with _full_precision(pixels.device):
            outputs = {"pixel_values": self._group(pixels, self.global_views, generator, photometric=True)}
            if self.local_views is not None:
                outputs["local_pixel_values"] = self._group(pixels, self.local_views, generator, photometric=True)
        return outputs

    def __repr__(self) -> str:
        return f"MultiViewGenerator(global={self.global_views}, local={self.local_views}, channels={self.channels})"


class SingleViewGenerator(_ViewPipeline):
    """One view per image: random resized crop and flip, then normalisation (MAE, He et al. 2022, sec. 4).

    Colour, blur and solarize settings are not used. Call with a uint8 batch ``(B, C, H, W)`` and
    a generator on the same device; returns ``{"pixel_values": (B, C, S, S)}`` float32.
    """

    def __init__(self, views: ViewsConfig, image_size: int, channels: int) -> None:
        super().__init__(views, image_size, channels)
        self.view = ViewGroup(size=self.crop_size, count=1, scale=tuple(views.crop_scale),
                              blur_probabilities=(0.0,), solarize_probabilities=(0.0,))
        logger.debug("built %r (colour, blur and solarize settings are not used by single_view)", self)

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        _check_pixels(pixels, self.channels, generator)
        with _full_precision(pixels.device):
            return {"pixel_values": self._group(pixels, self.view, generator, photometric=False)[:, 0]}

    def __repr__(self) -> str:
        return f"SingleViewGenerator(view={self.view}, channels={self.channels})"


def _rounded(levels: torch.Tensor) -> torch.Tensor:
    """Round grey levels half up and clamp to [0, 255], as PIL's 8-bit resampling."""
    return levels.add_(0.5).floor_().clamp_(0.0, 255.0)


class EvalTransform:
    """Deterministic evaluation transform: resize to ``S x S`` and normalise.

    Mirrors the exported ``ViTImageProcessor`` (``do_resize`` to ``S`` with PIL bilinear,
    rescale 1/255, normalise): PIL's bilinear filter widens with the shrink factor, which is
    ``interpolate(..., antialias=True)``, and PIL resizes uint8 images to uint8 one axis at a
    time, so each pass is rounded to whole grey levels. The result equals the processor's on
    nearly every pixel and is one grey level off on the rest (PIL's fixed-point weights break
    some exact ties the other way). Images already ``S x S`` are only rescaled and normalised.

    Call with uint8 ``(B, C, H, W)`` on any device; returns float32 ``(B, C, S, S)``.
    """

    def __init__(self, views: ViewsConfig, image_size: int, channels: int | None = None) -> None:
        if channels is None:
            if len(views.mean) not in (1, 3):
                raise ValueError(f"views.mean must have 1 or 3 values (one per image channel), got {tuple(views.mean)!r}")
            channels = len(views.mean)
        _check_normalisation(views, channels)
        self.channels = channels
        self.size = views.crop_size or image_size
        self.mean = tuple(float(value) for value in views.mean)
        self.std = tuple(float(value) for value in views.std)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        _check_pixels(pixels, self.channels)
        with _full_precision(pixels.device):
            return self._transform(pixels)

    def _transform(self, pixels: torch.Tensor) -> torch.Tensor:
        images = pixels.to(torch.float32)
        height, width = images.shape[-2:]
        # PIL resamples uint8 images in two passes, columns then rows, each rounded half up to
        # whole grey levels; doing the same keeps features within one grey level of the processor's.
        if width != self.size:
            images = _rounded(F.interpolate(images, size=(height, self.size), mode="bilinear", align_corners=False, antialias=True))
        if height != self.size:
            images = _rounded(F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True))
        images = images.div_(255.0)
        mean = torch.tensor(self.mean, device=images.device)
        std = torch.tensor(self.std, device=images.device)
        return functional.normalize(images, mean, std)

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, mean={self.mean}, std={self.std})"


def build_views(
    kind: str, views: ViewsConfig, image_size: int, channels: int
) -> Callable[[torch.Tensor, torch.Generator], dict[str, torch.Tensor]]:
    """The view generator of a method (``MethodSpec.views``).

    Args:
        kind: ``multi_view`` (:class:`MultiViewGenerator`) or ``single_view``
            (:class:`SingleViewGenerator`).
        views: the recipe's ``views`` section.
        image_size: ``data.image_size``; the view side when ``views.crop_size`` is unset.
        channels: ``data.channels`` (1 or 3).

    Returns:
        ``callable(pixels_uint8 (B, C, H, W), generator) -> dict`` of float32 tensors on the
        pixels' device.

    Raises:
        ValueError: an unknown kind or settings that do not fit the images (names the key).
    """
    if kind == "multi_view":
        return MultiViewGenerator(views, image_size, channels)
    if kind == "single_view":
        return SingleViewGenerator(views, image_size, channels)
    raise ValueError(f"unknown view kind {kind!r}; known kinds: {', '.join(VIEW_KINDS)}")


def build_eval_transform(views: ViewsConfig, image_size: int, channels: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Deterministic resize to ``views.crop_size or image_size`` and normalisation (:class:`EvalTransform`).

    ``channels`` defaults to the number of ``views.mean`` values; pass ``data.channels`` to have a
    mismatch reported here rather than on the first batch.
    """
    return EvalTransform(views, image_size, channels)
