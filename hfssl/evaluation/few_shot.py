"""Few-shot evaluation on frozen features: N-way K-shot episodes, mean accuracy and a 95 % interval.

The protocol of the few-shot literature (Vinyals et al. 2016; Snell et al. 2017; SimpleShot, Wang et
al. 2019), on the features of a labelled split (the test split): each episode draws ``ways`` classes,
then ``shots`` support and ``queries`` query rows of each, all without replacement, from a seeded
generator. Two classifiers are fitted on the support rows and scored on the query rows:

* ``nearest-centroid``: L2-normalised features, each query goes to the class whose mean support
  feature is nearest in Euclidean distance (SimpleShot's "L2N" nearest-centroid classifier);
* ``logistic``: multinomial logistic regression on the L2-normalised features, L2-penalised with
  inverse strength ``C`` (scikit-learn's objective), fitted for all episodes at once by one L-BFGS
  on the sum of the episodes' objectives: they share no parameter, so the joint minimum is every
  episode's own minimum.

The score is the mean query accuracy over the episodes with the half-width of its 95 % confidence
interval, ``1.96 * std / sqrt(episodes)`` (the sample standard deviation, ``ddof=1``), as the papers
above report it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

CLASSIFIERS = ("nearest-centroid", "logistic")
Z_95 = 1.959963984540054  # the 97.5 % quantile of the standard normal distribution


@dataclass
class Episodes:
    """Row indices of sampled episodes.

    Attributes:
        classes: ``(E, ways)`` the classes of each episode (their order gives the episode's labels).
        support: ``(E, ways, shots)`` row indices; ``query``: ``(E, ways, queries)``.
    """

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray


def sample_episodes(labels: np.ndarray, ways: int, shots: int, queries: int, episodes: int, seed: int = 0) -> Episodes:
    """Draw ``episodes`` N-way K-shot episodes from the rows of ``labels``.

    Classes with fewer than ``shots + queries`` rows are never drawn. Within an episode the
    support and query rows are disjoint.

    Raises:
        ValueError: fewer than ``ways`` classes have enough rows, or a count is below 1.
    """
    for name, value in (("ways", ways), ("shots", shots), ("queries", queries), ("episodes", episodes)):
        if value < 1:
            raise ValueError(f"few-shot: {name} must be >= 1, got {value}")
    labels = np.asarray(labels).reshape(-1)
    per_class = {int(value): np.flatnonzero(labels == value) for value in np.unique(labels[labels >= 0])}
    eligible = np.array(sorted(value for value, rows in per_class.items() if len(rows) >= shots + queries))
    if len(eligible) < ways:
        raise ValueError(f"few-shot: {ways}-way episodes with {shots} shots and {queries} queries need {ways} classes "
                         f"with at least {shots + queries} rows each; the split has {len(eligible)} such classes "
                         "(lower ways, shots or queries)")
    generator = np.random.default_rng(seed)
    classes = np.empty((episodes, ways), dtype=np.int64)
    support = np.empty((episodes, ways, shots), dtype=np.int64)
    query = np.empty((episodes, ways, queries), dtype=np.int64)
    for episode in range(episodes):
        classes[episode] = generator.choice(eligible, size=ways, replace=False)
        for slot, value in enumerate(classes[episode]):
            rows = generator.choice(per_class[int(value)], size=shots + queries, replace=False)
            support[episode, slot], query[episode, slot] = rows[:shots], rows[shots:]
    return Episodes(classes, support, query)


def mean_confidence_interval(accuracies: np.ndarray) -> tuple[float, float]:
    """``(mean, 95 % half-width)`` of per-episode accuracies: ``1.96 * std(ddof=1) / sqrt(n)``."""
    values = np.asarray(accuracies, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(Z_95 * values.std(ddof=1) / math.sqrt(values.size))


def _l2_normalise(features: torch.Tensor) -> torch.Tensor:
    return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def nearest_centroid_accuracies(support: torch.Tensor, query: torch.Tensor) -> np.ndarray:
    """Per-episode accuracy of the nearest-centroid classifier.

    Args:
        support: ``(E, ways, shots, D)`` L2-normalised features; ``query``: ``(E, ways, queries, D)``.
    """
    centroids = support.mean(dim=2)  # (E, ways, D)
    episodes, ways, queries, width = query.shape
    flat = query.reshape(episodes, ways * queries, width)
    predicted = torch.cdist(flat, centroids).argmin(dim=2)  # (E, ways * queries)
    truth = torch.arange(ways, device=query.device).repeat_interleave(queries)
    return (predicted == truth).double().mean(dim=1).cpu().numpy()


def logistic_accuracies(support: torch.Tensor, query: torch.Tensor, c: float = 1.0, max_iter: int = 200) -> np.ndarray:
    """Per-episode accuracy of L2-penalised logistic regression fitted on each episode's support rows.

    Each episode minimises ``C * sum_i CE_i + ||W||^2 / 2`` over its own ``(D, ways)`` weights and
    ``(ways,)`` bias; the sum over episodes is minimised jointly (the episodes are independent).
    """
    episodes, ways, shots, width = support.shape
    x = support.reshape(episodes, ways * shots, width)
    y = torch.arange(ways, device=support.device).repeat_interleave(shots).expand(episodes, -1)
    weight = torch.zeros(episodes, width, ways, device=support.device, dtype=support.dtype, requires_grad=True)
    bias = torch.zeros(episodes, 1, ways, device=support.device, dtype=support.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = torch.bmm(x, weight) + bias  # (E, ways * shots, ways)
        cross_entropy = torch.nn.functional.cross_entropy(logits.reshape(-1, ways), y.reshape(-1), reduction="sum")
        loss = c * cross_entropy + 0.5 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    queries = query.shape[2]
    flat = query.reshape(episodes, ways * queries, width)
    with torch.no_grad():
        predicted = (torch.bmm(flat, weight) + bias).argmax(dim=2)
    truth = torch.arange(ways, device=query.device).repeat_interleave(queries)
    return (predicted == truth).double().mean(dim=1).cpu().numpy()


def few_shot_evaluate(features: np.ndarray, labels: np.ndarray, ways: int = 5, shots: tuple[int, ...] = (1, 5),
                      queries: int = 15, episodes: int = 600, classifiers: tuple[str, ...] = CLASSIFIERS,
                      c: float = 1.0, seed: int = 0) -> list[dict[str, float | int | str]]:
    """Few-shot rows for every ``shots`` value and classifier; see the module docstring.

    Returns:
        rows ``{"classifier", "ways", "shots", "queries", "episodes", "accuracy", "ci95"}``; episodes
        of the same ``shots`` are shared by the classifiers.
    """
    unknown = [name for name in classifiers if name not in CLASSIFIERS]
    if unknown:
        raise ValueError(f"few-shot: unknown classifiers {unknown}; choose from {', '.join(CLASSIFIERS)}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    normalised = _l2_normalise(torch.as_tensor(np.asarray(features, dtype=np.float32), device=device))
    rows: list[dict[str, float | int | str]] = []
    for shot in shots:
        drawn = sample_episodes(labels, ways, shot, queries, episodes, seed)
        support = normalised[torch.as_tensor(drawn.support, device=device)]  # (E, ways, shots, D)
        query = normalised[torch.as_tensor(drawn.query, device=device)]
        for classifier in classifiers:
            accuracies = (nearest_centroid_accuracies(support, query) if classifier == "nearest-centroid"
                          else logistic_accuracies(support, query, c))
            mean, half_width = mean_confidence_interval(accuracies)
            rows.append({"classifier": classifier, "ways": ways, "shots": shot, "queries": queries,
                         "episodes": episodes, "accuracy": mean, "ci95": half_width})
    return rows
