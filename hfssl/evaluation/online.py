"""Evaluation during training: trainer callbacks that watch the representation as it is learnt.

All three are given to :func:`hfssl.training.trainer.train` by :mod:`hfssl.pipeline`.

:class:`OnlineKNN` (``train.knn_every``): kNN top-1 (``k = train.knn_k``) on the first ``train.knn_max_samples``
rows of the held-out splits (a uniform sample, given their fixed random order), logged as ``knn/top1_k<k>``. The
main process computes it; the others wait.

:class:`OnlineLinear` (``train.online_linear``): a linear classifier trained beside the SSL method, as solo-learn
and lightly do, on the *detached* image features of every optimiser step's training batch and its labels (rows
labelled -1, unlabelled, are left out), with its own AdamW; logged as ``online_linear/train_top1`` and
``online_linear/train_loss`` (that step's labelled rows, before the probe's update) at every step and
``online_linear/top1`` on the held-out split every ``train.online_linear.eval_every`` (or ``train.knn_every``)
steps.

Where the features come from: a second forward of the step's images, through the recipe's evaluation transform
(the images the end-of-run probes see, not the augmented views) and ``model.get_embeddings``, in eval mode and
without gradients, after the SSL optimiser step. That is one method-independent path for every model that serves
``image-features`` (the views of RotNet, jigsaw or MAE are not one clean image per row), at the cost of one
no-grad forward of the batch per step: about +25 % per step for the digits SimCLR recipe at batch 64 on one CPU
thread (130-139 ms without, 160-180 ms with, AVX2), less where the training forward is heavier (several views,
a teacher).

The probe never changes the SSL training: the forward runs without gradients (the model's ``.grad`` stay as
they are) and in eval mode (no batch-norm statistics move, no dropout), the global random streams are restored
around it (``torch.random.fork_rng``), and the probe's parameters (zeros at the start: no random draw) live in
its own optimiser. A run with the probe on ends with bit-identical model weights to the run without it.

Exact resume: the probe's weights and AdamW moments are its :meth:`OnlineLinear.state_dict`, saved with every
checkpoint and restored on ``--resume``. Distributed: every process computes the gradient of the summed loss of
its own labelled rows; one all-reduce sums the gradients, losses, hits and counts, and the gradient is divided by
the global count of labelled rows, so each process takes the same step as one process on the whole batch and the
probes stay identical. The held-out score is computed by the main process alone, like the kNN's.

:class:`OnlineZeroShot` (``train.zero_shot_every``, models that serve ``image-text-embeddings``): zero-shot top-1
of the model's transferable dual encoder (``model.get_dual_encoder``: the objects ``RUN/encoder`` will hold, a copy
of the weights) with the recipe's ``eval.zero-shot`` settings (templates, class names, ``datasets``), computed by
the zero-shot protocol's own :func:`~hfssl.evaluation.protocols.zero_shot.zero_shot_rows` on the held-out pairs
capped by ``eval.max_test_samples`` (the rows the end-of-run protocol scores, so the curve's value at the last step
is the card's), logged as ``zero_shot/top1`` and ``zero_shot/top1/<source>`` per extra source
(:func:`hfssl.recipe.zero_shot_metric`); the main process computes it, the others wait. It holds no state across
steps (nothing to checkpoint: a resumed run logs what the uninterrupted one did), costs a copy of the dual encoder's
weights while it scores, and runs inside :func:`untouched_model` like the probe. :func:`draw_zero_shot_curve` draws
the card's picture of it. Cost, ``recipes/clip/emoji.yaml`` (ConvNeXt 32 px and 2-layer BERT towers, 396 + 396
held-out pairs, 9 classes x 3 templates): 2.1-2.6 s a score on one CPU thread of a loaded 2-core machine, the first
9.8 s with loading the two sources (random weights; a script timing ``recipe_dual_encoder`` + ``zero_shot_rows``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hfssl.data.images import read_labels
from hfssl.distributed import all_reduce_sum
from hfssl.evaluation.context import EvaluationContext, recipe_dual_encoder
from hfssl.evaluation.features import extract_features_with
from hfssl.evaluation.knn import knn_evaluate
from hfssl.evaluation.protocols.zero_shot import ZeroShotSettings, zero_shot_rows
from hfssl.plots import Picture, figure, read_scalars, register_picture
from hfssl.recipe import ZERO_SHOT_METRIC, Recipe, knn_metric, zero_shot_metric
from hfssl.settings import RecipeError, build_section
from hfssl.training.trainer import TrainerCallback
from hfssl.views import build_eval_transform

logger = logging.getLogger(__name__)


class OnlineKNN(TrainerCallback):
    """``on_step_end`` every ``recipe.train.knn_every`` steps; see the module docstring."""

    def __init__(self, recipe: Recipe, temperature: float = 0.07) -> None:
        self.recipe = recipe
        self.temperature = temperature

    def on_train_start(self, model: torch.nn.Module, data: Any, accelerator: Any) -> None:
        """An early stop on the kNN score needs the labelled held-out split the score is measured on."""
        stop = self.recipe.train.early_stop
        if stop is not None and stop.metric == knn_metric(self.recipe.train.knn_k) and not _has_held_out(data):
            raise RecipeError(f"train.early_stop.metric={stop.metric!r}: {self.recipe.data.source!r} has no labelled "
                              "held-out split, so the online kNN measures nothing. Fix: train on labelled data with a "
                              "test split (data.eval_split), or name another metric")

    def reads_model(self, step: int) -> bool:
        """Whether ``on_step_end`` reads the weights at ``step`` (under FSDP2 they are gathered only then)."""
        return bool(self.recipe.train.knn_every) and step % self.recipe.train.knn_every == 0

    @torch.no_grad()
    def on_step_end(self, step: int, model: torch.nn.Module, data: Any, accelerator: Any) -> dict[str, float]:
        train = self.recipe.train
        if not self.reads_model(step):
            return {}
        logs: dict[str, float] = {}
        if data.eval_train_dataset is None or data.eval_test_dataset is None:
            return logs
        if accelerator.is_main_process:
            model.eval()
            transform = build_eval_transform(self.recipe.views, self.recipe.data.image_size, self.recipe.data.channels)
            limit = train.knn_max_samples
            train_set = data.eval_train_dataset.select(range(min(limit, len(data.eval_train_dataset))))
            test_set = data.eval_test_dataset.select(range(min(limit, len(data.eval_test_dataset))))
            batch = self.recipe.eval.batch_size
            train_f, train_y = extract_features_with(model.get_embeddings, transform, train_set, batch)
            test_f, test_y = extract_features_with(model.get_embeddings, transform, test_set, batch)
            if (train_y >= 0).all():
                num_classes = int(max(train_y.max(), test_y.max())) + 1
                result = knn_evaluate(train_f, train_y, test_f, test_y, ks=[train.knn_k],
                                      temperature=self.temperature, num_classes=num_classes)
                logs[knn_metric(train.knn_k)] = float(result[0]["top1"])
            model.train()
        accelerator.wait_for_everyone()
        return logs


def _has_held_out(data: Any) -> bool:
    """Whether the training data comes with labelled evaluation splits (the online kNN's and probe's)."""
    return data.eval_train_dataset is not None and data.eval_test_dataset is not None


@contextlib.contextmanager
def untouched_model(model: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, no gradients and the global random streams of the CPU and ``device`` restored afterwards:
    a forward inside changes neither the model's batch-norm statistics, its gradients nor the random numbers
    the training draws next. The model's training mode is put back."""
    was_training = model.training
    devices = [device.index if device.index is not None else 0] if device.type != "cpu" else []
    device_type = device.type if device.type != "cpu" else "cuda"  # fork_rng's default; no device forked on the CPU
    model.eval()
    try:
        with torch.random.fork_rng(devices=devices, device_type=device_type), torch.no_grad():
            yield
    finally:
        model.train(was_training)


class LinearProbe:
    """A linear classifier ``(features) -> (num_classes,)`` logits on detached features, with its own AdamW.

    :meth:`step` takes the features and labels of one optimiser step (one pair per micro-batch) and makes one
    update from the mean cross-entropy over their labelled rows, averaged over every process (see the module
    docstring). The weights start at zero (no random draw), the classifier's first prediction is uniform.
    """

    PREFIX = "online_linear."

    def __init__(self, feature_dim: int, num_classes: int, lr: float, weight_decay: float,
                 device: torch.device | str) -> None:
        self.num_classes = num_classes
        # skip_init: nn.Linear's own initialisation would draw from the global random stream the training uses.
        self.classifier = torch.nn.utils.skip_init(torch.nn.Linear, feature_dim, num_classes, device=device)
        with torch.no_grad():
            self.classifier.weight.zero_()
            self.classifier.bias.zero_()
        self.optimizer = torch.optim.AdamW(self.classifier.parameters(), lr=lr, weight_decay=weight_decay)

    def step(self, features: list[torch.Tensor], labels: list[torch.Tensor]) -> dict[str, float]:
        """One update; returns ``train_loss`` and ``train_top1`` over every process's labelled rows, measured
        before the update (empty, and no update, when no row of the step is labelled)."""
        parameters = [self.classifier.weight, self.classifier.bias]
        for parameter in parameters:
            parameter.grad = torch.zeros_like(parameter)
        loss_sum = torch.zeros((), device=self.classifier.weight.device)
        hits = torch.zeros((), device=loss_sum.device)
        count = torch.zeros((), device=loss_sum.device)
        for batch_features, batch_labels in zip(features, labels):
            keep = batch_labels >= 0
            if bool((batch_labels[keep] >= self.num_classes).any()):
                raise ValueError(f"a training label is {int(batch_labels.max())}, but the online linear probe has "
                                 f"{self.num_classes} classes (from the labelled evaluation splits): every class of "
                                 "the training split must appear in them")
            logits = self.classifier(batch_features[keep].detach().float())
            loss = F.cross_entropy(logits, batch_labels[keep], reduction="sum")
            loss.backward()  # the gradient of the summed loss: divided by the global count below
            loss_sum += loss.detach()
            hits += (logits.detach().argmax(dim=1) == batch_labels[keep]).sum()
            count += keep.sum()
        # One all-reduce of gradients, loss, hits and count: the same step on every process.
        packed = torch.cat([*(parameter.grad.reshape(-1) for parameter in parameters), loss_sum.reshape(1),
                            hits.reshape(1), count.reshape(1)])
        packed = all_reduce_sum(packed)
        total = float(packed[-1].item())
        if total == 0:
            self.optimizer.zero_grad(set_to_none=True)
            return {}
        offset = 0
        for parameter in parameters:
            size = parameter.numel()
            parameter.grad.copy_(packed[offset:offset + size].reshape(parameter.shape) / total)
            offset += size
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"train_loss": float(packed[-3].item()) / total, "train_top1": float(packed[-2].item()) / total}

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted classes ``(N,)`` of features ``(N, D)``."""
        return self.classifier(features.to(self.classifier.weight.device).float()).argmax(dim=1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights and AdamW's moments and step counts, as flat tensors under :attr:`PREFIX`."""
        state = {f"{self.PREFIX}weight": self.classifier.weight.detach(), f"{self.PREFIX}bias": self.classifier.bias.detach()}
        for index, moments in self.optimizer.state_dict()["state"].items():
            for name, value in moments.items():
                state[f"{self.PREFIX}optimizer.{index}.{name}"] = torch.as_tensor(value)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` gave (the learning rate and weight decay stay the recipe's)."""
        with torch.no_grad():
            self.classifier.weight.copy_(state[f"{self.PREFIX}weight"])
            self.classifier.bias.copy_(state[f"{self.PREFIX}bias"])
        saved: dict[int, dict[str, torch.Tensor]] = {}
        marker = f"{self.PREFIX}optimizer."
        for key, value in state.items():
            if key.startswith(marker):
                index, name = key[len(marker):].split(".", 1)
                saved.setdefault(int(index), {})[name] = value
        current = self.optimizer.state_dict()
        self.optimizer.load_state_dict({"state": saved, "param_groups": current["param_groups"]})


class OnlineLinear(TrainerCallback):
    """The online linear probe of ``train.online_linear``; see the module docstring."""

    def __init__(self, recipe: Recipe) -> None:
        if recipe.train.online_linear is None:
            raise ValueError("OnlineLinear needs train.online_linear set in the recipe")
        self.recipe = recipe
        self.settings = recipe.train.online_linear
        self.eval_every = recipe.train.online_linear_eval_every
        self.transform = build_eval_transform(recipe.views, recipe.data.image_size, recipe.data.channels)
        self.probe: LinearProbe | None = None

    def on_train_start(self, model: torch.nn.Module, data: Any, accelerator: Any) -> None:
        """Build the probe: its width is the model's feature width, its classes those of the labelled splits.
        Data without labels (or without a held-out split to score on) is refused here, before any step."""
        if not _has_held_out(data):
            raise RecipeError(
                f"train.online_linear needs labelled data with a held-out split (as the online kNN does): "
                f"{self.recipe.data.source!r} has no labels or no test split (data.eval_split). Fix: remove "
                "train.online_linear, or train on a labelled source with a test split")
        num_classes = _num_classes(data)
        device = accelerator.device
        size = self.recipe.views.crop_size or self.recipe.data.image_size
        channels = self.recipe.data.channels
        with untouched_model(model, device):
            probe_input = torch.zeros(1, channels, size, size, dtype=torch.uint8, device=device)
            feature_dim = int(model.get_embeddings(self.transform(probe_input)).shape[-1])
        self.probe = LinearProbe(feature_dim, num_classes, self.settings.lr, self.settings.weight_decay, device)

    def on_step_batches(self, step: int, batches: list[Any], model: torch.nn.Module, data: Any,
                        accelerator: Any) -> dict[str, float]:
        """One update of the probe on the step's batches (features from the weights after the SSL update)."""
        features, labels = [], []
        with untouched_model(model, accelerator.device):
            for batch in batches:
                features.append(model.get_embeddings(self.transform(batch["pixels"])))
                labels.append(batch["labels"].to(accelerator.device))
        values = self._probe().step(features, labels)
        return {f"online_linear/{name}": value for name, value in values.items()}

    def on_step_end(self, step: int, model: torch.nn.Module, data: Any, accelerator: Any) -> dict[str, float]:
        """``online_linear/top1`` on the first ``max_samples`` held-out rows, every ``eval_every`` steps (main process)."""
        if not self.eval_every or step % self.eval_every:
            return {}
        logs: dict[str, float] = {}
        if accelerator.is_main_process:
            test_set = data.eval_test_dataset
            test_set = test_set.select(range(min(self.settings.max_samples, len(test_set))))
            with untouched_model(model, accelerator.device):
                test_f, test_y = extract_features_with(model.get_embeddings, self.transform, test_set,
                                                       self.recipe.eval.batch_size, device=accelerator.device)
            predicted = self._probe().predict(torch.from_numpy(test_f)).cpu().numpy()
            logs["online_linear/top1"] = float(np.mean(predicted == test_y))
        accelerator.wait_for_everyone()
        return logs

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._probe().state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], checkpoint: Path) -> None:
        if not any(key.startswith(LinearProbe.PREFIX) for key in state):
            logger.warning("%s holds no online linear probe (train.online_linear was off when it was written): the "
                           "probe starts from zero weights at this step, so its values differ from an uninterrupted "
                           "run's", checkpoint)
            return
        self._probe().load_state_dict(state)

    def _probe(self) -> LinearProbe:
        if self.probe is None:
            raise RuntimeError("OnlineLinear.on_train_start was not called: the engine starts its callbacks first")
        return self.probe


def _num_classes(data: Any) -> int:
    """The classes of the labelled splits: the names' count when the data names them, else the largest id + 1."""
    if data.label_names:
        return len(data.label_names)
    labels = np.concatenate([read_labels(data.eval_train_dataset), read_labels(data.eval_test_dataset)])
    if labels.size == 0 or labels.max() < 0:
        raise RecipeError("train.online_linear needs labelled data: the evaluation splits hold no labels")
    return int(labels.max()) + 1


def zero_shot_settings(recipe: Recipe) -> ZeroShotSettings:
    """The recipe's ``eval.zero-shot`` settings (also when ``zero-shot`` is not among ``eval.protocols``); a bad
    value is a :class:`RecipeError` naming its key."""
    return build_section(ZeroShotSettings, "eval.zero-shot", recipe.eval.protocol_settings("zero-shot"))


class OnlineZeroShot(TrainerCallback):
    """Zero-shot top-1 every ``train.zero_shot_every`` steps; see the module docstring."""

    def __init__(self, recipe: Recipe) -> None:
        if not recipe.train.zero_shot_every:
            raise ValueError("OnlineZeroShot needs train.zero_shot_every set in the recipe")
        self.recipe = recipe
        self.every = recipe.train.zero_shot_every
        self.settings = zero_shot_settings(recipe)
        # Only its data: the held-out pairs of the recipe's source and of eval.zero-shot.datasets, loaded on first use
        # (main process) and kept for the run.
        self.data = EvaluationContext(eval_config=recipe.eval, data_config=recipe.data, recipe=recipe)

    def on_train_start(self, model: torch.nn.Module, data: Any, accelerator: Any) -> None:
        """Refuse, on every process and before any step, data that zero-shot classification cannot score."""
        if data.eval_test_dataset is None:
            raise RecipeError(f"train.zero_shot_every={self.every}: {self.recipe.data.source!r} has no held-out split "
                              "of image-caption pairs to score. Fix: set data.eval_split, or train.zero_shot_every=null")
        if self.settings.class_names is None and not data.label_names:
            raise RecipeError(f"train.zero_shot_every={self.every}: {self.recipe.data.source!r} has no class names. "
                              "Fix: set data.label_column to a class column, or give eval.zero-shot.class_names")

    def reads_model(self, step: int) -> bool:
        return step % self.every == 0

    def on_step_end(self, step: int, model: torch.nn.Module, data: Any, accelerator: Any) -> dict[str, float]:
        if not self.reads_model(step):
            return {}
        logs: dict[str, float] = {}
        if accelerator.is_main_process:
            with untouched_model(model, accelerator.device):
                encoder = recipe_dual_encoder(model, self.recipe, self.recipe.eval.batch_size)
                rows = zero_shot_rows(encoder, self.data.image_text_test, self.settings)
            del encoder  # the copy of the weights
            logs = {zero_shot_metric(row.get("dataset")): float(row["top1"]) for row in rows}
        accelerator.wait_for_everyone()
        return logs


ZERO_SHOT_CURVE_FILE = "zero_shot_curve.png"


def _curve_caption(description: dict[str, str], name: str) -> str:
    return (f"Zero-shot top-1 on the held-out pairs during training (every {description.get('every', '?')} steps, "
            "`train.zero_shot_every`), with the training loss; the value at the last step is the evaluation's.")


register_picture(Picture(ZERO_SHOT_CURVE_FILE, "Zero-shot accuracy and training loss against the optimiser step",
                         _curve_caption, heading="Training curve", order=21))


def draw_zero_shot_curve(run_dir: Path, images_dir: Path, every: int) -> list[Path]:
    """``images/zero_shot_curve.png``: the logged ``zero_shot/top1*`` curves (one line per source, %) beside
    ``train/loss``, when the run logged them to TensorBoard (else nothing)."""
    scalars = read_scalars(Path(run_dir) / "logs", ("train/loss",), prefixes=(ZERO_SHOT_METRIC,))
    curves = {tag: values for tag, values in scalars.items() if tag.startswith(ZERO_SHOT_METRIC) and values}
    if not curves:
        return []
    fig = figure(9.0, 3.5)
    accuracy = fig.add_subplot(1, 2, 1)
    for tag, values in sorted(curves.items()):
        steps, tops = zip(*values)
        label = "evaluation data" if tag == ZERO_SHOT_METRIC else tag[len(ZERO_SHOT_METRIC) + 1:]
        accuracy.plot(steps, [100 * value for value in tops], marker="o", markersize=3, label=label)
    accuracy.set_xlabel("optimiser step")
    accuracy.set_ylabel("zero-shot top-1 (%)")
    accuracy.legend(fontsize=8)
    accuracy.grid(alpha=0.3)
    loss = fig.add_subplot(1, 2, 2)
    if scalars.get("train/loss"):
        steps, losses = zip(*scalars["train/loss"])
        loss.plot(steps, losses, color="tab:gray")
    loss.set_xlabel("optimiser step")
    loss.set_ylabel("training loss")
    loss.grid(alpha=0.3)
    fig.tight_layout()
    Path(images_dir).mkdir(parents=True, exist_ok=True)
    path = Path(images_dir) / ZERO_SHOT_CURVE_FILE
    fig.savefig(path, dpi=100, metadata={"Description": f"hfssl curve=zero_shot every={every} sources={len(curves)}"})
    return [path]
