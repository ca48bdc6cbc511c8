"""``hfssl push`` and ``hfssl card``: argument definitions and handlers, wired into :mod:`hfssl.cli`.

``hfssl push DIR --repo-id OWNER/NAME [--private] [--revision R] [--commit-message M]
[--encoder-repo-id OWNER/NAME]`` publishes a run directory (:func:`hfssl.hub.push.push_run`).
Options left out fall back to the run's ``recipe.yaml`` ``hub`` section (``repo_id``,
``encoder_repo_id``, ``private``, ``revision``, ``commit_message``). The token comes from
``HF_TOKEN`` or ``hf auth login``; there is deliberately no ``--token`` option, because command
lines end up in shell histories and process lists.

``hfssl card DIR [--repo-id OWNER/NAME] [--encoder-repo-id OWNER/NAME]`` rewrites
``DIR/README.md`` from the run's current files, e.g. after ``hfssl eval`` added results.

Both refuse a run whose weights cannot be read or hold NaN or infinity, or whose
``eval_results.json`` holds a non-finite number (:func:`hfssl.hub.run.check_publishable`; exit
code 3 for non-finite values, 2 for a damaged file): a diverged model is never described or published.

Both handlers print a short summary (the command line is the only place that prints) and
return 0; errors propagate to :func:`hfssl.cli.main`, which prints them with their exit codes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hfssl.files import recording
from hfssl.hub.card import write_model_card
from hfssl.hub.push import check_repo_id, push_run
from hfssl.hub.run import check_publishable
from hfssl.recipe import load_recipe


def add_push_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hfssl push``."""
    parser.add_argument("run_dir", metavar="DIR", help="the run directory (the --output-dir of `hfssl train`)")
    parser.add_argument("--repo-id", metavar="OWNER/NAME",
                        help="model repo to publish to (default: the recipe's hub.repo_id); created if missing")
    parser.add_argument("--private", action="store_true", default=None,
                        help="create the repo(s) as private (default: the recipe's hub.private)")
    parser.add_argument("--revision", metavar="BRANCH", help="branch to commit to, created from main if new")
    parser.add_argument("--commit-message", metavar="MESSAGE", help="commit title")
    parser.add_argument("--encoder-repo-id", metavar="OWNER/NAME",
                        help="publish the plain-transformers encoder as its own repo (loadable at its root) "
                             "instead of in encoder/")


def add_card_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hfssl card``."""
    parser.add_argument("run_dir", metavar="DIR", help="the run directory whose README.md to regenerate")
    parser.add_argument("--repo-id", metavar="OWNER/NAME",
                        help="Hub repo the card's snippets load from (default: the recipe's hub.repo_id, else DIR)")
    parser.add_argument("--encoder-repo-id", metavar="OWNER/NAME", help="the encoder's own repo, if published apart")


def _hub_settings(run_dir: Path) -> Any:
    """The ``hub`` section of the run's recipe, or ``None`` without a recipe."""
    if not (run_dir / "recipe.yaml").is_file():
        return None
    return load_recipe(run_dir / "recipe.yaml").hub


def run_push(args: argparse.Namespace) -> int:
    """Handle ``hfssl push``: publish, then print the repo and commit URLs."""
    run_dir = Path(args.run_dir)
    hub = _hub_settings(run_dir)
    repo_id = args.repo_id or (hub.repo_id if hub is not None else None)
    if not repo_id:
        raise ValueError(f"no repo to push {run_dir} to: pass --repo-id OWNER/NAME (or set hub.repo_id in the recipe)")
    encoder_repo_id = args.encoder_repo_id or (hub.encoder_repo_id if hub is not None and not args.repo_id else None)
    private = args.private if args.private is not None else bool(hub.private if hub is not None else False)
    result = push_run(
        run_dir,
        repo_id,
        private=private,
        revision=args.revision or (hub.revision if hub is not None else None),
        commit_message=args.commit_message or (hub.commit_message if hub is not None else None),
        encoder_repo_id=encoder_repo_id,
    )
    lines = [f"hfssl: pushed {run_dir} to {repo_id} ({result['revision']})",
             f"  repo     {result['repo_url']}", f"  commit   {result['commit_url']}"]
    if "encoder_repo_url" in result:
        lines += [f"  encoder  {result['encoder_repo_url']}  (plain transformers: AutoModel.from_pretrained(...))",
                  f"  commit   {result['encoder_commit_url']}"]
    else:
        lines.append(f"  encoder  {result['repo_url']}/tree/{result['revision']}/encoder  "
                     "(plain transformers: AutoModel.from_pretrained(repo_id, subfolder=\"encoder\"))")
    print("\n".join(lines))
    return 0


def run_card(args: argparse.Namespace) -> int:
    """Handle ``hfssl card``: rewrite ``DIR/README.md`` and print its path."""
    if args.repo_id:
        check_repo_id(args.repo_id, "--repo-id")
    if args.encoder_repo_id:
        check_repo_id(args.encoder_repo_id, "--encoder-repo-id")
    run_dir = Path(args.run_dir)
    if (run_dir / "config.json").is_file():
        check_publishable(run_dir, "described")  # damaged or non-finite weights, non-finite results
    with recording(run_dir):  # the run's manifest records the card
        path = write_model_card(run_dir, repo_id=args.repo_id, encoder_repo_id=args.encoder_repo_id)
    print(f"hfssl: wrote the model card {path}")
    return 0
