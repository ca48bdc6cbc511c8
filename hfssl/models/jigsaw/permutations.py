"""The permutation set of the jigsaw task: greedy, seeded, maximal Hamming distance (Noroozi & Favaro 2016).

The task's classes are ``P`` permutations of the ``T`` tiles. Sec. 3.3 of the paper ("Algorithm 1")
builds them greedily: start from a random permutation, then repeatedly add the permutation of all
``T!`` that is farthest, in Hamming distance (the number of positions where two permutations
differ), from those already chosen, by the summed distance. Sec. 3.3 and Table 3 of the paper find
that sets whose permutations lie far apart, in average and in minimum distance, transfer better, and
that too-similar permutations make the task ambiguous; so the criterion here is the minimum distance
to the chosen set (no two classes closer than needed), and the paper's summed distance breaks its ties; what is left is broken by the lowest index in the lexicographic order of ``itertools.permutations``.
So the set is greedy-maximal in minimum distance, and a seed fixes it: the seed only picks the first
permutation (``torch.randint(T!, (1,))`` from ``torch.Generator().manual_seed(seed)``).

The set is computed once when a :class:`~hfssl.models.jigsaw.configuration_jigsaw.JigsawConfig` is created
and stored in the config, so a reloaded or exported model uses exactly the set it was trained with.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch


@functools.lru_cache(maxsize=2)
def all_permutations(num_tiles: int) -> np.ndarray:
    """Every permutation of ``range(num_tiles)``, ``(num_tiles!, num_tiles)`` int8, in the lexicographic order
    of ``itertools.permutations`` (built a first element at a time, without a Python loop per row)."""
    table = np.zeros((1, 0), dtype=np.int8)
    for size in range(1, num_tiles + 1):
        # The permutations of ``size`` elements starting with ``first``: ``first``, then those of the other
        # ``size - 1`` elements (the table of ``size - 1`` with values >= first moved up by one), in order.
        blocks = [np.concatenate([np.full((len(table), 1), first, dtype=np.int8),
                                  (table + (table >= first)).astype(np.int8)], axis=1) for first in range(size)]
        table = np.concatenate(blocks, axis=0)
    return table


def hamming_distances(columns: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """Hamming distance ``(N,)`` of each of ``N`` permutations, given as their columns ``(T, N)``, to
    ``permutation`` ``(T,)``."""
    return (columns != permutation[:, None]).sum(axis=0, dtype=np.int32)


def maximal_hamming_permutations(num_permutations: int, num_tiles: int = 9, seed: int = 0) -> list[list[int]]:
    """``num_permutations`` permutations of ``num_tiles`` tiles chosen greedily for maximal Hamming distance.

    Args:
        num_permutations: ``P``, the number of classes of the task, in ``[2, num_tiles!]``.
        num_tiles: ``T`` (9 for a 3x3 grid), 2 to 9.
        seed: picks the first permutation; the rest follows from it.

    Returns:
        ``P`` distinct permutations as lists, in the order they were chosen.
    """
    if isinstance(num_tiles, bool) or not isinstance(num_tiles, int) or not 2 <= num_tiles <= 9:
        raise ValueError(f"the permutation set is built for 2 to 9 tiles (grids of 2x2 or 3x3), got {num_tiles!r}")
    count = math.factorial(num_tiles)
    if isinstance(num_permutations, bool) or not isinstance(num_permutations, int) or not 2 <= num_permutations <= count:
        raise ValueError(f"num_permutations must be a whole number in [2, {count}] ({num_tiles} tiles have {count} "
                         f"permutations), got {num_permutations!r}")
    return [list(row) for row in _greedy_set(num_permutations, num_tiles, int(seed))]


@functools.lru_cache(maxsize=8)
def _greedy_set(num_permutations: int, num_tiles: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """:func:`maximal_hamming_permutations`, cached (configs and input builders ask for the same set)."""
    candidates = all_permutations(num_tiles)
    columns = np.ascontiguousarray(candidates.T)  # (T, T!): one pass per tile place
    count = len(candidates)
    first = int(torch.randint(count, (1,), generator=torch.Generator().manual_seed(seed)))
    chosen = [first]
    minimum = hamming_distances(columns, candidates[first])  # (T!,) distance to the nearest chosen one
    total = minimum.astype(np.int64)  # (T!,) summed distance to the chosen ones (the paper's criterion)
    # One score orders by the minimum first, then by the sum (which is < (P + 1) * T).
    weight = (num_permutations + 1) * num_tiles
    for _ in range(num_permutations - 1):
        score = minimum * np.int64(weight) + total
        score[chosen] = -1  # already chosen (their minimum is 0 anyway)
        index = int(np.argmax(score))  # the first of equal maxima: the lowest index
        chosen.append(index)
        distances = hamming_distances(columns, candidates[index])
        np.minimum(minimum, distances, out=minimum)
        total += distances
    return tuple(tuple(int(item) for item in row) for row in candidates[chosen])


def check_permutations(permutations: list[list[int]], num_tiles: int) -> None:
    """Raise ``ValueError`` unless ``permutations`` are distinct permutations of ``range(num_tiles)``."""
    rows = [tuple(int(item) for item in row) for row in permutations]
    bad = [row for row in rows if sorted(row) != list(range(num_tiles))]
    if bad:
        raise ValueError(f"permutations must each order the {num_tiles} tiles 0..{num_tiles - 1}; got {list(bad[0])}")
    if len(set(rows)) != len(rows):
        raise ValueError("permutations must be distinct: the same permutation twice makes two classes one")


def minimum_hamming_distance(permutations: list[list[int]]) -> int:
    """The smallest Hamming distance between two permutations of the set (for cards and tests)."""
    table = torch.tensor(permutations)
    distances = (table[:, None, :] != table[None, :, :]).sum(dim=2)
    distances.fill_diagonal_(table.shape[1] + 1)
    return int(distances.min())
