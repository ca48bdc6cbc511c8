"""Jigsaw configuration (Noroozi & Favaro 2016, "Unsupervised Learning of Visual Representations by Solving
Jigsaw Puzzles")."""

from __future__ import annotations

import math
from typing import Any

from transformers import PretrainedConfig

from hfssl.configuration_utils import HfsslVisionConfig, check_range
from hfssl.models.jigsaw.permutations import check_permutations, maximal_hamming_permutations
from hfssl.views.grid import GridLayout


class JigsawConfig(HfsslVisionConfig):
    """Configuration of :class:`~hfssl.models.jigsaw.modeling_jigsaw.JigsawForPreTraining`.

    Defaults follow the paper (sec. 3.2-3.3): a 3x3 grid of 75-px cells on a 225-px image, a 64-px tile
    at a random place in each cell (``gap = 11``, ``jitter = 5``: see :mod:`hfssl.views.grid`), each tile
    normalised on its own, 100 permutations of maximal Hamming distance, a 512-wide fc6 per tile and a
    4096-wide fc7 on the nine concatenated tiles before the 100-way fc8.

    Args:
        grid_size: cells per side (2 or 3; ``grid_size ** 2`` tiles).
        tile_size / gap / jitter: the tile layout (:class:`hfssl.views.grid.GridLayout`).
        num_permutations: ``P``, the classes of the task.
        permutation_seed: picks the first permutation of the greedy set.
        permutations: the set itself, ``P`` lists of ``grid_size ** 2`` tile indices; computed from
            ``num_permutations`` and ``permutation_seed`` when not given, and saved with the config.
        normalize_tiles: each tile to zero mean and unit variance on its own (sec. 3.2).
        tile_embedding_dim: width of the shared per-tile layer (fc6).
        classifier_hidden_dim: width of the hidden layer (fc7) on the concatenated tiles.
    """

    model_type = "hfssl_jigsaw"
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        grid_size: int = 3,
        tile_size: int = 64,
        gap: int = 11,
        jitter: int = 5,
        num_permutations: int = 100,
        permutation_seed: int = 0,
        permutations: list[list[int]] | None = None,
        normalize_tiles: bool = True,
        tile_embedding_dim: int = 512,
        classifier_hidden_dim: int = 4096,
        **kwargs: Any,
    ) -> None:
        if grid_size not in (2, 3):
            raise ValueError(f"grid_size must be 2 or 3 (4 or 9 tiles), got {grid_size!r}")
        GridLayout(grid_size, tile_size, gap, jitter)  # checks the layout, naming a bad value
        check_range("tile_embedding_dim", tile_embedding_dim, 1, 1 << 16)
        check_range("classifier_hidden_dim", classifier_hidden_dim, 1, 1 << 16)
        num_tiles = grid_size ** 2
        if permutations is None:
            permutations = maximal_hamming_permutations(num_permutations, num_tiles, permutation_seed)
        else:
            permutations = [[int(item) for item in row] for row in permutations]
            check_permutations(permutations, num_tiles)
            if len(permutations) != num_permutations:
                raise ValueError(f"permutations holds {len(permutations)} permutations but num_permutations is "
                                 f"{num_permutations}; give both the same count (or leave permutations out)")
        if len(permutations) > math.factorial(num_tiles):
            raise ValueError(f"{num_tiles} tiles have only {math.factorial(num_tiles)} permutations")
        self.grid_size = grid_size
        self.tile_size = tile_size
        self.gap = gap
        self.jitter = jitter
        self.num_permutations = num_permutations
        self.permutation_seed = permutation_seed
        self.permutations = permutations
        self.normalize_tiles = normalize_tiles
        self.tile_embedding_dim = tile_embedding_dim
        self.classifier_hidden_dim = classifier_hidden_dim
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)

    @property
    def layout(self) -> GridLayout:
        return GridLayout(self.grid_size, self.tile_size, self.gap, self.jitter)

    def task_summary(self) -> str:
        """One line for the model card: what the encoder saw in training."""
        return (f"{self.grid_size ** 2} tiles of {self.tile_size} px ({self.grid_size}x{self.grid_size} grid, gap "
                f"{self.gap} px, jitter up to {self.jitter} px{', each tile normalised on its own' if self.normalize_tiles else ''}) "
                f"shuffled by one of {self.num_permutations} permutations of maximal Hamming distance")
