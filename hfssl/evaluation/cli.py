"""``hfssl eval PATH``: evaluate a run, an exported encoder, any transformers vision model or a
word2vec file, through the same dispatcher as the end of training (:func:`hfssl.evaluation.runner.evaluate`).

Defaults come from ``PATH/recipe.yaml`` when PATH is an hfssl run, or from the run's recipe when
PATH is the ``encoder/`` folder inside one (its ``data`` and ``eval`` sections), otherwise from
:class:`~hfssl.data.config.ImageDataConfig` / :class:`~hfssl.recipe.EvalConfig`; every flag
overrides them (``--k``, ``--temperature``, ``--c-grid``, ``--solver``, ``--label-fractions``, the
few-shot and ``--finetune-*`` flags set ``eval.knn`` / ``eval.linear`` / ``eval.few-shot`` /
``eval.finetune``). ``--plot`` draws the projections of the test embeddings and the confusion
matrices of the probes (:mod:`hfssl.evaluation.pictures`). Results go to ``--output``;
without it, to ``PATH/eval_results.json`` for an hfssl run (merged with the rows of protocols that
are not re-run) and to standard output otherwise. A table of the results is logged.

A CLIP-like PATH (an exported ``CLIPModel`` / ``SiglipModel`` / ``VisionTextDualEncoderModel``, or an hfssl
CLIP run) gets zero-shot and retrieval by default, and the image protocols (``--protocol knn --protocol
linear --dataset SOURCE``) on its image tower's pooled features before the projection, as SSL encoders are
scored (:mod:`hfssl.evaluation.features`); a CLIP run's own labelled pairs serve when ``--dataset`` is left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from hfssl.data.config import IMAGE, IMAGE_TEXT, TEXT, ImageDataConfig, ImageTextDataConfig, SourceConfig, TextDataConfig
from hfssl.evaluation.context import EvaluationContext, is_dual_encoder, run_recipe_path
from hfssl.evaluation.pictures import draw_evaluation_pictures
from hfssl.evaluation.protocols import available_protocols, get_protocol
from hfssl.evaluation.runner import draw_protocol_pictures, evaluate, format_results_table, write_eval_results
from hfssl.recipe import EvalConfig, load_recipe, parse_override
from hfssl.settings import RecipeError
from hfssl.files import recording
from hfssl.registry import is_hfssl_run
from hfssl.training.run_directory import check_output_path

logger = logging.getLogger(__name__)

# argparse destination -> data config field; eval config fields and protocol settings below.
_DATA_FLAGS = {
    "dataset": "source",
    "dataset_config": "config_name",
    "train_split": "train_split",
    "test_split": "eval_split",
    "image_column": "image_column",
    "label_column": "label_column",
    "image_size": "image_size",
    "channels": "channels",
    "text_column": "text_column",
}
# A flag of the linear probe's settings sets them for the per-layer linear probe too (the same probe per layer).
_SETTING_FLAGS = {"k": ("knn", "k"), "temperature": ("knn", "temperature"),
                  "c_grid": (("linear", "c_grid"), ("layer-linear", "c_grid")),
                  "solver": (("linear", "solver"), ("layer-linear", "solver")),
                  "label_fractions": ("linear", "label_fractions"),
                  "ways": ("few-shot", "ways"), "shots": ("few-shot", "shots"), "episodes": ("few-shot", "episodes"),
                  "finetune_epochs": ("finetune", "epochs"), "finetune_max_steps": ("finetune", "max_steps"),
                  "finetune_lr": ("finetune", "lr"), "layer_decay": ("finetune", "layer_decay"),
                  "finetune_label_fractions": ("finetune", "label_fractions"), "init": ("finetune", "init"),
                  "finetune_output_dir": ("finetune", "output_dir"),
                  "class_names": ("zero-shot", "class_names"), "templates": ("zero-shot", "templates"),
                  "freeze_stages": ("finetune", "freeze_stages"), "layers": ("layer-linear", "layers"),
                  "mlp_hidden_dim": ("mlp-probe", "hidden_dim"), "mlp_depth": ("mlp-probe", "depth"),
                  "mlp_epochs": ("mlp-probe", "epochs"), "pretext_seed": ("pretext", "seed")}
_EVAL_FLAGS = {
    "max_train_samples": "max_train_samples",
    "max_test_samples": "max_test_samples",
    "batch_size": "batch_size",
}


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``hfssl eval`` arguments to a (sub)parser."""
    parser.add_argument("path", help="hfssl run directory, exported encoder directory, transformers vision model "
                        "or CLIP-like dual encoder (folder or Hub id), or word2vec text/binary file")
    parser.add_argument("--dataset", help="Hub dataset id, local path or builtin:digits / builtin:fashion_mnist "
                        "(default: the run's recipe data.source; required for other paths)")
    parser.add_argument("--dataset-config", help="dataset configuration name (Hub datasets with several configs)")
    parser.add_argument("--protocol", action="append", dest="protocols", metavar="NAME",
                        help="repeatable (default: the recipe's eval.protocols, or knn and linear); one of: "
                        + "; ".join(f"{name}: {get_protocol(name).description}" for name in available_protocols())
                        .replace("%", "%%"))  # argparse formats help strings with %
    parser.add_argument("--output", help="JSON file (default: PATH/eval_results.json for an hfssl run, else standard output)")
    parser.add_argument("--train-split", help="split used as kNN memory bank / probe training set (default: train)")
    parser.add_argument("--test-split", help="split the accuracy is measured on (default: test)")
    parser.add_argument("--image-column", help="image column (default: detected)")
    parser.add_argument("--label-column", help="label column (default: detected)")
    parser.add_argument("--text-column", help="caption column of image-text data (default: detected)")
    parser.add_argument("--image-size", type=int, help="side of the prepared square images (default: the recipe's, else 32)")
    parser.add_argument("--channels", type=int, choices=(1, 3), help="image channels (default: the recipe's, else 3)")
    parser.add_argument("--k", type=int, nargs="+", help="kNN neighbour counts (default: 20 200)")
    parser.add_argument("--temperature", type=float, help="kNN vote temperature (default: 0.07)")
    parser.add_argument("--c-grid", type=float, nargs="+", help="linear probe C values to choose from, for linear and layer-linear "
                        "(default: 0.001 0.01 0.1 1 10)")
    parser.add_argument("--class-names", nargs="+", help="zero-shot class names, in label order (default: the data's)")
    parser.add_argument("--templates", nargs="+", help="zero-shot prompt templates with {} for the class name")
    parser.add_argument("--max-train-samples", type=int, help="cap on training rows")
    parser.add_argument("--max-test-samples", type=int, help="cap on test rows")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default: 256)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the raw-pixel baselines")
    parser.add_argument("--solver", choices=("torch", "sklearn"), help="linear probe solver (default: torch)")
    parser.add_argument("--label-fractions", type=float, nargs="+", metavar="F",
                        help="linear probe on these class-balanced shares of the labels, e.g. 0.01 0.1 1 (default: 1)")
    parser.add_argument("--ways", type=int, help="few-shot: classes per episode (default: 5)")
    parser.add_argument("--shots", type=int, nargs="+", help="few-shot: labelled examples per class (default: 1 5)")
    parser.add_argument("--episodes", type=int, help="few-shot: episodes (default: 600)")
    parser.add_argument("--finetune-epochs", type=float, help="finetune: epochs (default: 5)")
    parser.add_argument("--finetune-max-steps", type=int, help="finetune: optimiser steps (overrides the epochs)")
    parser.add_argument("--finetune-lr", type=float, help="finetune: peak AdamW learning rate (default: 1e-3)")
    parser.add_argument("--layer-decay", type=float, help="finetune: layer-wise learning-rate decay (default: 1, off)")
    parser.add_argument("--finetune-label-fractions", type=float, nargs="+", metavar="F",
                        help="finetune on these class-balanced shares of the labels (default: 1)")
    parser.add_argument("--init", choices=("pretrained", "random"),
                        help="finetune: start from the encoder's weights or a random initialisation of its architecture")
    parser.add_argument("--finetune-output-dir", help="finetune: where the runs and the classifiers go "
                        "(default: RUN/finetune for an hfssl run, else ./finetune-<encoder folder>)")
    parser.add_argument("--freeze-stages", type=int, help="finetune: keep the stem and the first N stages / blocks "
                        "frozen (default: 0, every parameter trains)")
    parser.add_argument("--set", action="append", dest="settings", metavar="PROTOCOL.KEY=VALUE",
                        help="repeatable: any protocol setting, the value read as YAML (for example "
                        "fixmatch.label_fractions=[0.01,0.1] or mean-teacher.max_steps=500)")
    parser.add_argument("--layers", type=int, nargs="+", metavar="I",
                        help="layer-linear: the 1-based stages / blocks to probe (default: all)")
    parser.add_argument("--mlp-hidden-dim", type=int, help="mlp-probe: hidden layer width (default: 512)")
    parser.add_argument("--mlp-depth", type=int, help="mlp-probe: hidden layers (default: 2; 0: a linear head)")
    parser.add_argument("--mlp-epochs", type=int, help="mlp-probe: most epochs, early-stopped on the validation split "
                        "(default: 100)")
    parser.add_argument("--pretext-seed", type=int, help="pretext: seed of the held-out pretext task (default: 0)")
    parser.add_argument("--plot", action="store_true", help="draw PCA / t-SNE / UMAP (when umap-learn is installed) "
                        "projections of the test embeddings and the probes' confusion matrices")
    parser.add_argument("--images-dir", help="where --plot writes its PNGs (default: PATH/images for an hfssl run, "
                        "else ./images)")


def _reads(protocol: str) -> str | None:
    """The data kind a protocol reads (``ValueError`` naming the known protocols for a typo)."""
    return get_protocol(protocol).data


def resolve_configs(args: argparse.Namespace) -> tuple[SourceConfig | None, EvalConfig]:
    """Data and eval settings: the run's recipe (when there is one) overridden by the flags."""
    recipe_file = run_recipe_path(args.path)
    if recipe_file is not None:
        recipe = load_recipe(recipe_file)
        data, eval_config = recipe.data, recipe.eval
        logger.info("defaults from %s: dataset %s", recipe_file, data.source)
        if (isinstance(data, ImageTextDataConfig) and args.dataset is not None and args.protocols
                and all(_reads(name) == IMAGE for name in args.protocols)):
            # Image protocols (knn, linear) of an image-text run's image tower on another, labelled image
            # source: read as images, at the run's image size and channels.
            data = ImageDataConfig(source=args.dataset, image_size=data.image_size, channels=data.channels)
    elif args.protocols and all(_reads(name) == TEXT for name in args.protocols):
        # Text models: held-out text from --dataset (default builtin:english_corpus) and built-in labelled sets.
        data = TextDataConfig(source=args.dataset) if args.dataset else TextDataConfig()
        eval_config = EvalConfig()
    elif args.dataset is None:
        if args.protocols and all(_reads(name) is None for name in args.protocols):
            data, eval_config = None, EvalConfig()
        else:
            raise ValueError(f"{args.path!r} is not an hfssl run with a recipe.yaml: give the evaluation data with "
                             "--dataset SOURCE (for example --dataset builtin:digits)")
    elif (args.protocols and all(_reads(name) == IMAGE_TEXT for name in args.protocols)) or (
            not args.protocols and is_dual_encoder(Path(args.path))):
        # An image-text dual encoder (a CLIPModel / VisionTextDualEncoderModel folder or Hub id).
        data = ImageTextDataConfig(source=args.dataset)
        eval_config = EvalConfig(protocols=tuple(available_protocols(IMAGE_TEXT)), baselines=False)
    else:
        data, eval_config = ImageDataConfig(source=args.dataset), EvalConfig()
    data_updates = {field: getattr(args, flag) for flag, field in _DATA_FLAGS.items() if getattr(args, flag) is not None}
    eval_updates = {field: getattr(args, flag) for flag, field in _EVAL_FLAGS.items() if getattr(args, flag) is not None}
    settings = {name: dict(values) for name, values in eval_config.settings.items()}
    for flag, targets in _SETTING_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        for protocol, key in (targets if isinstance(targets[0], tuple) else (targets,)):
            settings.setdefault(protocol, {})[key] = list(value) if isinstance(value, (list, tuple)) else value
    for text in args.settings or ():
        path, value = parse_override(text)
        if len(path) != 2:
            raise RecipeError(f"--set {text!r} must look like PROTOCOL.KEY=VALUE (for example fixmatch.max_steps=500)")
        if path[0] not in available_protocols():
            raise RecipeError(f"--set {text!r}: unknown protocol {path[0]!r}; known protocols: "
                              f"{', '.join(available_protocols())}")
        settings.setdefault(path[0], {})[path[1]] = value
    eval_updates["settings"] = settings
    if args.no_baselines:
        eval_updates["baselines"] = False
    if args.protocols:
        eval_updates["protocols"] = tuple(args.protocols)
    if data is not None and data_updates:
        unknown = [flag for flag, field in _DATA_FLAGS.items() if field in data_updates and not hasattr(data, field)]
        if unknown:
            raise ValueError(f"--{unknown[0].replace('_', '-')} does not apply to the {type(data).__name__} of {args.path!r}")
        # replace() re-runs __post_init__, so invalid values (image size, channels) are rejected here.
        data = dataclasses.replace(data, **data_updates)
    return data, dataclasses.replace(eval_config, **eval_updates)


def run_eval(args: argparse.Namespace) -> int:
    """Run ``hfssl eval``; returns the process exit code."""
    path = Path(args.path)
    if args.output:  # never a file of a run or an export (the model, its config, a checkpoint)
        check_output_path(args.output, "--output", file_name="eval_results.json")
    if getattr(args, "plot", False) and args.images_dir:
        check_output_path(args.images_dir, "--images-dir", is_file=False)
    data, eval_config = resolve_configs(args)
    context = EvaluationContext.for_path(args.path, data, eval_config)
    with recording(path) if path.is_dir() else nullcontext():  # the run's manifest records what is written there
        _evaluate_and_write(args, path, context, eval_config)
    return 0


def _evaluate_and_write(args: argparse.Namespace, path: Path, context: EvaluationContext, eval_config: Any) -> None:
    results = evaluate(context, list(eval_config.protocols))
    logger.info("evaluation of %s\n%s", args.path, format_results_table(results))
    if getattr(args, "plot", False):
        images = Path(args.images_dir) if args.images_dir else (path / "images" if is_hfssl_run(path) else Path("images"))
        pictures = draw_evaluation_pictures(context, images) + draw_protocol_pictures(context, images)
        logger.info("pictures: %s", ", ".join(str(picture) for picture in pictures) or "none (no image protocol ran)")
    if args.output:
        write_eval_results(results, args.output, merge=False)
        logger.info("wrote %s", args.output)
    elif is_hfssl_run(path):
        output = path / "eval_results.json"
        write_eval_results(results, output, merge=True)
        logger.info("wrote %s (merged with the rows of other protocols already there)", output)
    else:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
