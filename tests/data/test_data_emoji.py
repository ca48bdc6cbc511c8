"""builtin:emoji / builtin:emoji_twitter: captions from names, categories as labels, split by subcategory.

The real sets are installed by scripts/prepare_emoji.sh (scripts/test.sh runs it; it needs npm).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hfssl.data import builtin
from hfssl.data.builtin import BuiltinDataError, EMOJI_CATEGORIES, emoji_caption, split_emoji_subcategories


def test_the_split_keeps_subcategories_whole_and_holds_out_part_of_every_category() -> None:
    rows = [("Food & Drink", f"food-{index % 6}") for index in range(60)]
    rows += [("Flags", "country-flag")] * 50 + [("Flags", "flag")] * 4 + [("Flags", "subdivision-flag")] * 3
    rows += [("Activities", "only-one")] * 5
    test = split_emoji_subcategories(rows)
    assert test == split_emoji_subcategories(rows)  # fixed seed
    food = {sub for category, sub in rows if category == "Food & Drink"} & test
    held = sum(1 for category, sub in rows if category == "Food & Drink" and sub in test)
    assert food and 0.2 * 60 <= held <= 0.4 * 60
    assert "country-flag" not in test and test & {"flag", "subdivision-flag"}  # the dominant one stays in training
    assert "only-one" not in test  # a category with one subcategory is never emptied


def _fake_install(root: Path, art: str) -> None:
    records = []
    for index, (category, subcategory, name) in enumerate([
            ("Smileys & Emotion", "face-smiling", "GRINNING FACE"), ("Smileys & Emotion", "face-smiling", "winking face"),
            ("Smileys & Emotion", "face-hat", "cowboy hat face"), ("Flags", "flag", "chequered flag"),
            ("Flags", "country-flag", "flag: france"), ("Component", "skin-tone", "light skin tone")]):
        image = f"{index:04x}.png"
        records.append({"name": name, "image": image, "category": category, "subcategory": subcategory,
                        f"has_img_{art}": True})
        rgba = np.zeros((64, 64, 4), dtype=np.uint8)
        rgba[16:48, 16:48] = (200, 10 * index, 0, 255)  # an opaque square on a transparent background
        folder = root / art / "img" / art / "64"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgba, "RGBA").save(folder / image)
    (root / art / "emoji.json").write_text(json.dumps(records))


def test_a_fake_install_loads_with_captions_labels_and_files_read_as_transformers_reads_them(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_install(tmp_path, "google")
    monkeypatch.setenv(builtin.EMOJI_ENV, str(tmp_path))
    splits = builtin.load_builtin("emoji")
    rows = splits["train"].to_list() + splits["test"].to_list()
    assert sorted(row["name"] for row in rows) == ["chequered flag", "cowboy hat face", "flag: france", "grinning face",
                                                 "winking face"]  # lower-cased; Component left out
    assert splits["train"].features["label"].names == list(EMOJI_CATEGORIES)
    by_name = {row["name"]: row for row in rows}
    assert by_name["grinning face"]["caption"] == "an emoji of grinning face"
    assert by_name["flag: france"]["caption_with_category"] == "an emoji of flag: france (flags)"
    assert by_name["grinning face"]["label"] == EMOJI_CATEGORIES.index("Smileys & Emotion")
    image = np.asarray(by_name["grinning face"]["image"], dtype=np.uint8)
    assert image.shape == (64, 64, 3) and tuple(image[32, 32]) == (200, 0, 0)
    # The stored colour under the transparent background (black here), as transformers' load_image reads the file.
    from transformers.image_utils import load_image

    np.testing.assert_array_equal(image, np.asarray(load_image(by_name["grinning face"]["file"])))
    assert (image[0, 0] == 0).all() and Path(by_name["grinning face"]["file"]).name == "0000.png"
    train_subcategories = {row["subcategory"] for row in splits["train"].to_list()}
    assert not train_subcategories & {row["subcategory"] for row in splits["test"].to_list()}


def test_a_missing_set_names_the_prepare_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(builtin.EMOJI_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(BuiltinDataError, match=r"scripts/prepare_emoji.sh twitter.*HFSSL_EMOJI_DIR"):
        builtin.load_builtin("emoji_twitter")


def test_the_real_sets_split_alike_in_both_art_styles() -> None:
    """The installed emoji-datasource 16.0.0 sets (scripts/prepare_emoji.sh): 1,906 base emoji."""
    try:
        google, twitter = builtin.load_builtin("emoji"), builtin.load_builtin("emoji_twitter")
    except BuiltinDataError as error:
        pytest.fail(f"{error} (scripts/test.sh installs both sets)")
    assert len(google["train"]) + len(google["test"]) == 1906
    assert sorted(set(google["test"]["label"])) == list(range(9))  # every category is held out in part
    assert not set(google["train"]["subcategory"]) & set(google["test"]["subcategory"])
    assert sorted(google["test"]["name"]) == sorted(twitter["test"]["name"])
    assert 0.15 <= len(google["test"]) / 1906 <= 0.3
    assert emoji_caption("cat face") == "an emoji of cat face"
