"""Scheduled scalars: a value as a pure function of the optimisation step.

A method declares the scalars it wants scheduled (``HfsslPreTrainedModel.schedules()``: BYOL's
teacher momentum, DINO's teacher temperature and weight decay, ...) as :class:`Schedule` objects;
a recipe overrides any of them under ``train.schedules.<name>``; the engine evaluates each one at
every step, hands the values to the model's per-step hook and logs them under ``schedule/<name>``.
Being pure functions of ``(step, total_steps)``, they need no state to resume exactly.

Shapes of a schedule (``kind``), after an optional linear warm-up from ``warmup_start`` to
``start`` over the first ``warmup_steps`` steps (or ``warmup_fraction`` of training):

* ``constant``: ``start``;
* ``linear``: ``start`` -> ``end`` linearly over the remaining steps;
* ``cosine``: ``end - (end - start) * (1 + cos(pi * progress)) / 2`` (BYOL sec. 3.2, DINO sec. 3.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hfssl.settings import RecipeError, build_section, suggest

KINDS = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class Schedule:
    """A scalar as a function of the step; see the module docstring.

    Args:
        start: value after the warm-up (at the first step without warm-up).
        end: value at the last step (``linear`` / ``cosine``); ignored for ``constant``.
        kind: ``constant``, ``linear`` or ``cosine``.
        warmup_steps / warmup_fraction: length of the linear warm-up (at most one of the two).
        warmup_start: value at step 0 of the warm-up (defaults to ``start``: no warm-up effect).
    """

    start: float
    end: float | None = None
    kind: str = "constant"
    warmup_steps: int | None = None
    warmup_fraction: float | None = None
    warmup_start: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RecipeError(f"schedule kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.kind != "constant" and self.end is None:
            raise RecipeError(f"a {self.kind} schedule needs an end value (start {self.start})")
        if self.warmup_steps is not None and self.warmup_fraction is not None:
            raise RecipeError("give a schedule's warmup_steps or warmup_fraction, not both")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise RecipeError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.warmup_fraction is not None and not 0.0 <= self.warmup_fraction < 1.0:
            raise RecipeError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")

    def warmup_length(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return min(self.warmup_steps, total_steps)
        if self.warmup_fraction is not None:
            return int(round(self.warmup_fraction * total_steps))
        return 0

    def __call__(self, step: int, total_steps: int) -> float:
        """The value at optimisation step ``step`` (0 = before the first update) of ``total_steps``."""
        warmup = self.warmup_length(total_steps)
        if step < warmup:
            first = self.start if self.warmup_start is None else self.warmup_start
            return first + (self.start - first) * step / warmup
        if self.kind == "constant":
            return self.start
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        end = float(self.end)  # checked in __post_init__
        if self.kind == "linear":
            return self.start + (end - self.start) * progress
        return end - (end - self.start) * (1.0 + math.cos(math.pi * progress)) / 2.0

    def replace(self, where: str = "schedule", **changes: object) -> Schedule:
        """A copy with some fields changed (recipe overrides keep the method's other fields); ``where``
        names the schedule in errors (``train.schedules.teacher_momentum``)."""
        return build_section(Schedule, where, {**self.__dict__, **changes})


def cosine(start: float, end: float) -> Schedule:
    """``start`` -> ``end`` with a half cosine over training (BYOL's momentum, DINO's weight decay)."""
    return Schedule(start=start, end=end, kind="cosine")


def constant(value: float) -> Schedule:
    return Schedule(start=value)


def warmup_then_constant(first: float, value: float, *, warmup_fraction: float) -> Schedule:
    """Linear warm-up from ``first`` to ``value`` over ``warmup_fraction`` of training, then ``value``
    (DINO's teacher temperature, 0.04 -> 0.07 over the first 30 epochs)."""
    return Schedule(start=value, warmup_start=first, warmup_fraction=warmup_fraction)


def resolve_schedules(declared: dict[str, Schedule], overrides: dict[str, dict] | None,
                      owner: str = "the model") -> dict[str, Schedule]:
    """Apply ``train.schedules`` overrides (name -> changed fields) to a model's declared schedules.

    Raises:
        RecipeError: for a name the model does not schedule (with a suggestion) or a bad field.
    """
    resolved = dict(declared)
    for name, changes in (overrides or {}).items():
        if name not in declared:
            allowed = sorted(declared)
            known = f"{suggest(name, allowed)}" if allowed else f" {owner} schedules nothing"
            raise RecipeError(f"train.schedules.{name}: {owner} has no scheduled scalar {name!r}.{known}")
        if isinstance(changes, (int, float)) and not isinstance(changes, bool):
            changes = {"start": float(changes), "kind": "constant", "warmup_steps": None, "warmup_fraction": None}
        if not isinstance(changes, dict):
            raise RecipeError(f"train.schedules.{name} must be a number or a mapping of schedule fields "
                              f"(start, end, kind, warmup_steps, warmup_fraction, warmup_start), got {changes!r}")
        resolved[name] = declared[name].replace(where=f"train.schedules.{name}", **changes)
    return resolved
