"""Jigsaw (Noroozi & Favaro 2016): the permutation set, the puzzles against per-image reference code, the
tiles reassembled by their label, the input builder, the recipe's size checks."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from hfssl.models.jigsaw import JigsawConfig, JigsawForPreTraining, JigsawInputs, make_jigsaw_puzzles
from hfssl.models.jigsaw.permutations import maximal_hamming_permutations, minimum_hamming_distance
from hfssl.recipe import load_recipe
from hfssl.settings import RecipeError
from hfssl.views.grid import GridLayout
from tiny import TINY_CONVNEXT, TINY_VIT
from tiny_jigsaw import PERMUTATIONS, TINY_JIGSAW

REPO = Path(__file__).resolve().parents[3]


def _hamming(a, b) -> int:
    return sum(x != y for x, y in zip(a, b))


def test_permutation_set_is_the_greedy_maximal_minimum_distance_set_naively_recomputed():
    """Every pick after the seeded first one has the largest distance to its nearest chosen permutation,
    ties going to the largest summed distance (the paper's criterion), then to the first in lexicographic order."""
    # 2x2 grid: a plain loop over all 24 candidates.
    chosen = maximal_hamming_permutations(12, 4, seed=3)
    candidates = [list(p) for p in itertools.permutations(range(4))]
    assert chosen[0] == candidates[int(torch.randint(24, (1,), generator=torch.Generator().manual_seed(3)))]
    for k in range(1, 12):
        best = max((c for c in candidates if c not in chosen[:k]),
                   key=lambda c: (min(_hamming(c, p) for p in chosen[:k]), sum(_hamming(c, p) for p in chosen[:k]),
                                  -candidates.index(c)))
        assert chosen[k] == best, k
    # 3x3 grid: the same rule over all 9! candidates with numpy, written independently.
    chosen = maximal_hamming_permutations(5, 9, seed=3)
    table = np.array(list(itertools.permutations(range(9))), dtype=np.int8)  # lexicographic
    first = int(torch.randint(len(table), (1,), generator=torch.Generator().manual_seed(3)))
    assert chosen[0] == table[first].tolist()
    picked = [first]
    for k in range(1, 5):
        distances = np.stack([(table != table[index]).sum(1) for index in picked])  # (k, 9!)
        key = distances.min(0) * 10_000 + distances.sum(0)
        key[picked] = -1
        picked.append(int(np.argmax(key)))
        assert chosen[k] == table[picked[-1]].tolist(), k


def test_permutation_set_is_unique_seeded_and_far_apart():
    default = JigsawConfig(backbone_config=TINY_JIGSAW["backbone_config"]).permutations
    assert len(default) == 100 and len({tuple(p) for p in default}) == 100
    assert all(sorted(p) == list(range(9)) for p in default)
    assert default == maximal_hamming_permutations(100, 9, seed=0)  # same seed, same set
    assert maximal_hamming_permutations(10, 9, seed=1) != PERMUTATIONS  # PERMUTATIONS: seed 0
    assert minimum_hamming_distance(default) >= 6  # no two classes closer than 6 of 9 places
    assert minimum_hamming_distance(PERMUTATIONS) >= 8


def test_the_permutation_set_is_stored_in_the_config_and_reloaded_as_it_was(tmp_path):
    config = JigsawConfig(**{**TINY_JIGSAW, "permutations": None}, permutation_seed=5)
    config.save_pretrained(tmp_path)
    reloaded = JigsawConfig.from_pretrained(tmp_path)
    assert reloaded.permutations == config.permutations == maximal_hamming_permutations(10, 9, seed=5)
    custom = [list(reversed(p)) for p in PERMUTATIONS]  # a set given by hand is kept, not recomputed
    assert JigsawConfig(**{**TINY_JIGSAW, "permutations": custom}).permutations == custom
    with pytest.raises(ValueError, match="distinct"):
        JigsawConfig(**{**TINY_JIGSAW, "permutations": [PERMUTATIONS[0]] * 10})
    with pytest.raises(ValueError, match="holds 9 permutations but num_permutations is 10"):
        JigsawConfig(**{**TINY_JIGSAW, "permutations": PERMUTATIONS[:9]})


def _naive_puzzles(images, layout, permutations, seed, normalize):
    """Per image: draw as documented (labels, then the jitter), slice each cell's tile, show them in the
    label's order, standardise each tile by itself."""
    generator = torch.Generator().manual_seed(seed)
    batch = images.shape[0]
    labels = torch.randint(len(permutations), (batch,), generator=generator)
    shifts = torch.randint(-layout.jitter, layout.jitter + 1, (batch, 9, 2), generator=generator)
    start = (images.shape[-1] - layout.extent) // 2
    out = torch.empty(batch, 9, images.shape[1], layout.tile_size, layout.tile_size)
    for b in range(batch):
        for place in range(9):
            cell = permutations[int(labels[b])][place]
            row = start + (cell // 3) * layout.cell_size + layout.gap // 2 + int(shifts[b, cell, 0])
            column = start + (cell % 3) * layout.cell_size + layout.gap // 2 + int(shifts[b, cell, 1])
            tile = images[b, :, row:row + layout.tile_size, column:column + layout.tile_size]
            if normalize:
                tile = (tile - tile.mean()) / (tile.std(unbiased=False) + 1e-5)
            out[b, place] = tile
    return out, labels


@pytest.mark.parametrize("normalize", [False, True])
def test_puzzles_equal_per_image_reference_code_for_a_fixed_generator(normalize):
    layout = GridLayout(3, 6, 4, 2)
    images = torch.randn(6, 3, 31, 31, generator=torch.Generator().manual_seed(0))
    table = torch.tensor(PERMUTATIONS)
    tiles, labels = make_jigsaw_puzzles(images, layout, table, torch.Generator().manual_seed(11), normalize)
    expected, expected_labels = _naive_puzzles(images, layout, PERMUTATIONS, 11, normalize)
    assert torch.equal(labels, expected_labels) and len(set(labels.tolist())) > 1
    if normalize:
        torch.testing.assert_close(tiles, expected, rtol=0, atol=1e-5)
    else:
        assert torch.equal(tiles, expected)


def test_tiles_put_back_by_their_label_rebuild_the_image():
    """Without gap and jitter the grid covers the image: undoing each label's permutation and laying the
    tiles out row-major gives the image back, pixel for pixel."""
    layout = GridLayout(3, 5, 0, 0)
    images = torch.randn(8, 1, 15, 15, generator=torch.Generator().manual_seed(2))
    tiles, labels = make_jigsaw_puzzles(images, layout, torch.tensor(PERMUTATIONS), torch.Generator().manual_seed(4),
                                        normalize_tiles=False)
    for b in range(8):
        permutation = PERMUTATIONS[int(labels[b])]
        cells = [None] * 9
        for place, cell in enumerate(permutation):
            cells[cell] = tiles[b, place]
        rebuilt = torch.cat([torch.cat(cells[row * 3:row * 3 + 3], dim=2) for row in range(3)], dim=1)
        assert torch.equal(rebuilt, images[b])
    assert not torch.equal(tiles[:, 0], images[:, :, :5, :5])  # the tiles were shuffled


def _recipe(*overrides: str):
    return load_recipe(REPO / "recipes/jigsaw/digits.yaml", list(overrides))


def test_input_builder_makes_the_puzzles_of_the_normalised_batch_and_the_model_learns_from_them():
    recipe = _recipe(*[f"model.{key}={value}" for key, value in
                       (("tile_size", 16), ("gap", 2), ("jitter", 1), ("num_permutations", 10))], "data.image_size=54")
    pixels = torch.randint(0, 256, (4, 1, 54, 54), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = JigsawInputs(recipe)({"pixels": pixels, "labels": torch.zeros(4)}, torch.Generator().manual_seed(9))
    images = (pixels.float() / 255 - 0.3) / 0.4
    config = JigsawConfig(**recipe.model)
    tiles, labels = make_jigsaw_puzzles(images, config.layout, torch.tensor(config.permutations),
                                        torch.Generator().manual_seed(9))
    assert set(inputs) == {"pixel_values", "labels"}
    assert torch.equal(inputs["pixel_values"], tiles) and torch.equal(inputs["labels"], labels)
    torch.manual_seed(0)
    model = JigsawForPreTraining(config).eval()
    with torch.no_grad():
        output = model(**inputs)
        logits, task_labels = model.get_pretext_predictions(images, torch.Generator().manual_seed(9))
    assert torch.equal(task_labels, labels) and torch.allclose(logits, output.logits, atol=1e-5)
    assert output.logits.shape == (4, 10) and 0 <= float(output.pretext_accuracy) <= 1


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.image_size=28"], "data.image_size 28 with grid 3, gap 3 and 18-px tiles (model.tile_size): a 3x3 grid of "
                             "18-px tiles with gap 3 needs images of at least 63 px, got 28 px; use images of at least 63 px"),
    (["model.tile_size=8"], "8-px tiles are smaller than the 16 px the backbone needs; use images of at least 57 px"),
    (["model.jitter=2"], "model: jitter=2 would move tiles out of their cells"),
    (["views.crop_size=32"], "views.crop_size=32: the grid pretext tasks cut their tiles from whole images"),
])
def test_the_recipe_refuses_tiles_that_do_not_fit_with_the_sizes_that_work(overrides, message):
    with pytest.raises(RecipeError) as error:
        _recipe(*overrides)
    assert message in str(error.value)


@pytest.mark.parametrize("backbone", [dict(TINY_VIT, image_size=32), TINY_CONVNEXT], ids=["vit", "convnext"])
def test_any_vision_backbone_trains_on_tiles_and_embeds_whole_images(backbone):
    """A ViT sees 8-px tiles through interpolated position embeddings, a ConvNeXt through its stem; both get
    a gradient everywhere, serve the pretext task and embed the whole 32-px images."""
    torch.manual_seed(0)
    model = JigsawForPreTraining(JigsawConfig(**{**TINY_JIGSAW, "backbone_config": backbone}))
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tiles, labels = make_jigsaw_puzzles(images, model.config.layout, torch.tensor(PERMUTATIONS),
                                        torch.Generator().manual_seed(1))
    output = model(pixel_values=tiles, labels=labels)
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        logits, task_labels = model.get_pretext_predictions(images, torch.Generator().manual_seed(1))
        embeddings = model.get_embeddings(images)
    assert torch.equal(task_labels, labels) and logits.shape == (4, 10) and embeddings.shape == (4, 32)
