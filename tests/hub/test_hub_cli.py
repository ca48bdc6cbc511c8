"""``hfssl push`` and ``hfssl card`` through the real command line entry point (hfssl.cli.main)."""

from __future__ import annotations

import json
import shutil

import yaml
from huggingface_hub import ModelCard

from hfssl.cli import main
from hub_fixtures import USER, snapshot


def test_push_command_publishes_and_prints_the_urls(hub_env, tiny_run, capsys):
    before = snapshot(tiny_run)
    code = main(["push", str(tiny_run), "--repo-id", f"{USER}/cli", "--private", "--revision", "r1",
                 "--commit-message", "from the CLI", "--encoder-repo-id", f"{USER}/cli-encoder"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"{hub_env.endpoint}/{USER}/cli" in out and f"{hub_env.endpoint}/{USER}/cli-encoder" in out
    repo = hub_env.repo(f"{USER}/cli")
    assert repo.private and hub_env.repo(f"{USER}/cli-encoder").private
    assert repo.commits[repo.branches["r1"]].title == "from the CLI"
    assert "config.json" in hub_env.files(f"{USER}/cli-encoder", "r1")
    assert snapshot(tiny_run) == before


def test_push_command_takes_the_repo_from_the_recipe(hub_env, tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["hub"]["repo_id"] = f"{USER}/from-recipe"
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    assert main(["push", str(run)]) == 0
    assert "README.md" in hub_env.files(f"{USER}/from-recipe")


def test_push_command_errors_are_printed_and_nothing_is_sent(hub_env, tiny_run, capsys, monkeypatch):
    assert main(["push", str(tiny_run), "--repo-id", "not a repo"]) == 2
    assert "'not a repo'" in capsys.readouterr().err
    assert main(["push", str(tiny_run)]) == 2  # no --repo-id and none in the recipe
    assert "pass --repo-id OWNER/NAME" in capsys.readouterr().err
    monkeypatch.delenv("HF_TOKEN")
    assert main(["push", str(tiny_run), "--repo-id", f"{USER}/x"]) == 2
    assert "no Hugging Face token found" in capsys.readouterr().err
    assert hub_env.requests == []


def test_card_command_regenerates_the_card_after_new_evaluations(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["card", str(run), "--repo-id", f"{USER}/digits"]) == 0
    assert str(run / "README.md") in capsys.readouterr().out
    first = ModelCard.load(run / "README.md")
    assert len(first.data.eval_results) == 6
    results = json.loads((run / "eval_results.json").read_text())
    results["results"].append({"protocol": "knn", "features": "model", "k": 5, "temperature": 0.07,
                               "top1": 0.9667, "top5": 0.9972})
    (run / "eval_results.json").write_text(json.dumps(results))
    assert main(["card", str(run), "--repo-id", f"{USER}/digits"]) == 0
    second = ModelCard.load(run / "README.md")
    assert len(second.data.eval_results) == 8
    assert "| kNN (k=5, T=0.07) | 96.7 | - | 99.7 | - |" in (run / "README.md").read_text()
    assert main(["card", str(run), "--repo-id", "bad/id/x"]) == 2
