"""The learning-rate schedule as a pure function of the optimizer step.

Being a pure function of ``step`` makes resuming exact: nothing but the step counter is restored.
Other scheduled scalars (teacher momentum, temperatures, weight decay) are declared by the models
as :class:`hfssl.schedules.Schedule` objects.
"""

from __future__ import annotations

import math

from hfssl.recipe import OptimConfig


def warmup_steps(optim: OptimConfig, total_steps: int) -> int:
    if optim.warmup_steps is not None:
        return min(optim.warmup_steps, total_steps)
    return int(round(optim.warmup_ratio * total_steps))


def lr_multiplier(step: int, total_steps: int, optim: OptimConfig) -> float:
    """Factor applied to ``optim.lr`` at optimizer step ``step`` (0-based).

    Linear warmup from ``lr / warmup`` to ``lr`` (Goyal et al. 2017), then ``cosine`` (Loshchilov &
    Hutter 2017, no restarts), ``linear`` (word2vec's decay) or ``constant``, ending at
    ``min_lr_ratio``.
    """
    warmup = warmup_steps(optim, total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if optim.schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / decay_steps)
    floor = optim.min_lr_ratio
    if optim.schedule == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def constant_lr_multiplier(step: int, total_steps: int, optim: OptimConfig) -> float:
    """The factor of a parameter group with a constant learning rate (``ParameterGroup.constant_lr``):
    the same warm-up as :func:`lr_multiplier`, then 1 whatever ``optim.schedule`` is (SimSiam sec. 4.5:
    "fix lr for predictor"; the official code sets the predictor's group to ``init_lr`` every epoch)."""
    warmup = warmup_steps(optim, total_steps)
    return (step + 1) / warmup if step < warmup else 1.0
