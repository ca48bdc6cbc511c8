"""``hfssl train | eval | export | embed | push | card | compare | sweep | wise-ft``.

The command line is the only place that prints (the summary at the end of ``train``, and error
messages); the library logs. One error style: a user error (:mod:`hfssl.errors`, and the
``ValueError`` / ``FileNotFoundError`` / ``KeyError`` / ``OSError`` raised while reading inputs)
prints one line ``hfssl COMMAND: error: ...`` naming the input and the fix, without a traceback,
and exits with the documented code (:data:`hfssl.errors.EXIT_CODES`); ``--debug`` (or
``--log-level DEBUG``) shows the traceback instead. Ctrl-C exits with 130 without a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModel

from hfssl.compare import compare, find_runs
from hfssl.errors import EXIT_CODES, EXIT_STORAGE, EXIT_USAGE, HfsslError
from hfssl.evaluation.cli import add_eval_arguments, run_eval
from hfssl.evaluation.embed import TEXT_POOLINGS, EmbedRequest, embed, is_parquet
from hfssl.registry import is_hfssl_run
from hfssl.export import ExportContext, check_export_target
from hfssl.files import export_run_id, folder_lock, read_manifest, recording, storage_error
from hfssl.hub.cli import add_card_arguments, add_push_arguments, run_card, run_push
from hfssl.pipeline import run
from hfssl.process_exit import exit_now
from hfssl.recipe import load_recipe
from hfssl.registry import discover_methods, method_for_config
from hfssl.sweep import add_sweep_arguments, run_sweep
from hfssl.wise_ft import parse_alphas, wise_ft

logger = logging.getLogger("hfssl")


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML, e.g. recipes/simclr/digits.yaml")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.max_steps=100")
    parser.add_argument("--output-dir", help="run directory (default: runs/<recipe folder>-<recipe name>)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue the run in --output-dir from its newest intact checkpoint (says which step and "
                            "which recipe keys changed; refuses a changed model, data or batch); an error when there "
                            "is nothing to continue")
    start.add_argument("--resume-or-start", action="store_true",
                       help="continue the run in --output-dir when it has a checkpoint, else start a new run there "
                            "(for jobs that may be restarted)")
    start.add_argument("--resume-from", metavar="CHECKPOINT",
                       help="continue from this checkpoint folder (DIR/checkpoints/step-XXXXXXXX), or from the newest "
                            "checkpoint of a Hub branch that --hub-checkpoints filled: hf://OWNER/NAME[@BRANCH]")
    start.add_argument("--overwrite", action="store_true",
                       help="start a new run in an --output-dir that holds an earlier hfssl run: exactly the files "
                            "that run recorded in its .hfssl-manifest.json (checkpoints, model, recipe, card, encoder, "
                            "results, logs) are deleted first; other files are kept. A folder without that record is "
                            "refused, with or without --overwrite")
    parser.add_argument("--hub-checkpoints", metavar="hf://OWNER/NAME[@BRANCH]",
                        help="also commit every checkpoint to this branch of a Hub model repo (default branch "
                             "'checkpoints'; the repo is created private when new; needs a write token): the branch "
                             "holds the newest checkpoint and its history the earlier ones; continue from it anywhere "
                             "with --resume-from hf://OWNER/NAME[@BRANCH]")


def default_output_dir(recipe_path: str) -> Path:
    path = Path(recipe_path)
    return Path("runs") / f"{path.parent.name}-{path.stem}"


def run_train(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, args.overrides)  # run() checks it, once, before any work
    group_existed = torch.distributed.is_available() and torch.distributed.is_initialized()
    output_dir = Path(args.output_dir) if args.output_dir else default_output_dir(args.recipe)
    resume = args.resume_from or ("auto" if args.resume_or_start else args.resume)
    result = run(recipe, output_dir, resume=resume, overwrite=args.overwrite, hub_checkpoints=args.hub_checkpoints)
    if PartialState().is_main_process:
        _print_summary(result)
    # The process group ends with the command that started it, after every process has finished the run
    # (the trainer closes its trackers only; Accelerator.end_training would end the group before that).
    # A group that existed before the command (a script that calls main() more than once, a worker that
    # trains again after it) is its owner's, and stays.
    if not group_existed:
        PartialState().destroy_process_group()
    return 0


def _print_summary(result) -> None:  # noqa: ANN001 - TrainResult
    out = result.output_dir
    lines = [f"hfssl: trained {result.steps} steps" + (f", final loss {result.final_loss:.4f}" if result.final_loss is not None else "")]
    if result.resumed_from:
        lines.append(f"  resumed from       {result.resumed_from} (step {result.resumed_step})")
        for damaged in result.damaged_checkpoints:
            lines.append(f"    skipped damaged  {damaged}")
        for change in result.recipe_changes:
            lines.append(f"    recipe change    {change}")
    if result.skipped_steps:
        lines.append(f"  skipped steps      {result.skipped_steps} (non-finite loss; train.on_nonfinite=skip)")
    lines.append(f"  full SSL model     {out}  (import hfssl; AutoModel.from_pretrained(...))")
    if (out / "encoder").is_dir():
        lines.append(f"  encoder            {out / 'encoder'}  (plain transformers: AutoModel.from_pretrained(...))")
    lines.append(f"  resolved recipe    {out / 'recipe.yaml'}")
    lines.append(f"  checkpoints        {out / 'checkpoints'}")
    lines.append(f"  TensorBoard logs   {out / 'logs'}")
    eval_path = out / "eval_results.json"
    if eval_path.is_file():
        lines.append(f"  evaluation         {eval_path}")
        data = json.loads(eval_path.read_text())
        for group in ("results", "baselines"):
            for entry in data.get(group, []):
                if entry.get("section", "all") != "all":  # per-section analogy rows stay in the JSON
                    continue
                detail = ", ".join(f"{key}={entry[key]}" for key in ("k", "C", "label_fraction", "init", "classifier",
                                                                      "shots") if key in entry)
                settings = ("C", "temperature", "label_fraction", "lr", "layer_decay", "label_smoothing", "epochs")
                metrics = ", ".join(f"{key} {entry[key]:.4f}" for key in entry
                                    if isinstance(entry[key], float) and key not in settings)
                lines.append(f"    {entry.get('features', 'model'):<10} {entry['protocol']:<16} {detail:<30} {metrics}")
    if (out / "README.md").is_file():
        lines.append(f"  model card         {out / 'README.md'}")
    if (out / "images").is_dir():
        lines.append(f"  pictures           {out / 'images'}")
    print("\n".join(lines))


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="an hfssl run directory (the --output-dir of `hfssl train`)")
    parser.add_argument("--output", help="destination folder (default: PATH/encoder); replaced as a whole, so it "
                        "must be new, empty or an earlier export (with the .hfssl-manifest.json of its files and "
                        "nothing else), and neither the run, a folder above it nor a folder inside another run")


def run_export(args: argparse.Namespace) -> int:
    """``hfssl export``: the method's own export (``MethodSpec.export``) of any registered method."""
    path = Path(args.path)
    if not is_hfssl_run(path):
        raise FileNotFoundError(f"{path} is not an hfssl run directory (no config.json with an hfssl_* model type); "
                                "pass the --output-dir of `hfssl train`")
    discover_methods()
    recipe = load_recipe(path / "recipe.yaml") if (path / "recipe.yaml").is_file() else None
    model = AutoModel.from_pretrained(path).eval()
    spec = method_for_config(model.config)
    default = path / "encoder"
    output = Path(args.output) if args.output else default
    check_export_target(output, path)
    # Side files (word2vec's gensim files) stay in the run for its own encoder/, else go with the export.
    own = output.resolve() == default.resolve()
    files_dir = path if own else output
    manifest = read_manifest(path)
    with ExitStack() as stack:
        # One process per folder: the run (read, and written for its own encoder/) and the export folder.
        stack.enter_context(folder_lock(path, "hfssl export", required=own))
        stack.enter_context(recording(path))
        if not own:
            stack.enter_context(folder_lock(output, "hfssl export"))
            check_export_target(output, path)  # again under the lock
            stack.enter_context(recording(output))  # side files written beside the export (word2vec's gensim files)
        token = export_run_id.set(manifest.run_id if manifest is not None else "")
        try:
            written = spec.export(model, output, ExportContext(recipe=recipe, run_dir=path, files_dir=files_dir))
        finally:
            export_run_id.reset(token)
    print(f"hfssl: exported the {spec.name} model's transferable part to {written}")
    return 0


def _add_embed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="hfssl run directory, exported encoder, transformers vision or text model (folder, "
                        "Hub id or builtin:all-MiniLM-L6-v2), or image-text dual encoder")
    parser.add_argument("--dataset", help="Hub dataset id, local path or builtin:NAME (default: the run's recipe "
                        "data.source; required for other paths)")
    parser.add_argument("--output", required=True, help="FILE.parquet (one Parquet file) or a folder "
                        "(Dataset.save_to_disk); refused if it exists (see --overwrite) or is one of a run's own files")
    parser.add_argument("--layers", action="store_true", help="per-layer image features: one column layer_i per "
                        "stage (ResNet, ConvNeXt) or block (ViT) instead of the pooled embedding")
    parser.add_argument("--pooling", choices=TEXT_POOLINGS, help="text models: mean of the token states (default) or "
                        "the [CLS] state")
    parser.add_argument("--split", help="the split to embed (default: the run's data.train_split for its own "
                        "source, else train; Hub ids also take slices such as 'test[:10%%]')")
    parser.add_argument("--dataset-config", help="dataset configuration name (Hub datasets with several configs)")
    parser.add_argument("--image-column", help="image column (default: detected)")
    parser.add_argument("--label-column", help="label column written as 'label' (default: detected; text sources: "
                        "a column named label)")
    parser.add_argument("--text-column", help="text column of a text source, caption column of image-text data "
                        "(default: detected)")
    parser.add_argument("--image-size", type=int, help="side of the prepared square images (default: the run's, else 32)")
    parser.add_argument("--channels", type=int, choices=(1, 3), help="image channels (default: the run's, else 3)")
    parser.add_argument("--max-samples", type=int, help="embed only the first N rows of the split")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per forward pass (default: 256)")
    parser.add_argument("--max-length", type=int, default=512, help="text models: tokens per text, at most the "
                        "model's positions (default: 512)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file, or a folder "
                        "written by an earlier `hfssl embed`")


def run_embed(args: argparse.Namespace) -> int:
    """``hfssl embed``: a model's features of every row of a data set, to a file ``datasets`` reads."""
    request = EmbedRequest(
        model=args.path, output=Path(args.output), dataset=args.dataset, dataset_config=args.dataset_config,
        split=args.split, layers=args.layers, pooling=args.pooling, batch_size=args.batch_size,
        max_samples=args.max_samples, max_length=args.max_length, image_column=args.image_column,
        label_column=args.label_column, text_column=args.text_column, image_size=args.image_size,
        channels=args.channels, overwrite=args.overwrite)
    result = embed(request)
    widths = ", ".join(f"{name} ({width})" for name, width in result.widths.items())
    reader = (f"datasets.load_dataset('parquet', data_files={str(result.output)!r})" if is_parquet(result.output)
              else f"datasets.load_from_disk({str(result.output)!r})")
    print(f"hfssl: wrote {result.capability} of {result.rows} rows to {result.output}: row_id"
          f"{', label' if result.labels else ''}, {widths}; read it with {reader}")
    return 0


def _add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run folders (the --output-dir of `hfssl train`), or folders of runs (an `hfssl sweep` "
                             "output)")
    parser.add_argument("--output", default="comparison",
                        help="folder for compare.md, compare.html (one self-contained page) and compare.json "
                             "(default: ./comparison; a new or empty folder, or an earlier report's)")
    parser.add_argument("--title", default="hfssl comparison", help="the report's heading")


def run_compare(args: argparse.Namespace) -> int:
    """``hfssl compare``: the runs side by side (:mod:`hfssl.compare`)."""
    runs = find_runs(args.runs)
    paths = compare(runs, args.output, title=args.title)
    print(f"hfssl: compared {len(runs)} runs: {paths['markdown']}, {paths['html']}, {paths['json']}")
    return 0


def _add_wise_ft_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_a", metavar="A", help="the zero-shot (before) model: an hfssl image-text run folder or "
                                                      "an exported dual-encoder folder / Hub id")
    parser.add_argument("model_b", metavar="B", help="the fine-tuned (after) model, of A's architecture")
    parser.add_argument("--alpha", default="0,0.25,0.5,0.75,1",
                        help="mixing coefficients in [0, 1], comma-separated: theta = (1 - alpha) A + alpha B "
                             "(default 0,0.25,0.5,0.75,1)")
    parser.add_argument("--output", default="wise_ft",
                        help="folder for wise_ft.json, wise_ft.png and wise_ft.md (default ./wise_ft; a new or empty "
                             "folder, or an earlier report's)")
    parser.add_argument("--recipe", default=None,
                        help="the recipe whose data (reference distribution) and eval.zero-shot settings (templates, "
                             "class names, datasets: the shifted distributions) score the models (default: B's run "
                             "recipe, else A's)")
    parser.add_argument("--save-alpha", type=float, default=None, metavar="X",
                        help="also export theta(X) as a plain transformers folder with its processor, OUTPUT/alpha-X")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def run_wise_ft(args: argparse.Namespace) -> int:
    """``hfssl wise-ft``: weight-space ensembles of a zero-shot and a fine-tuned model (:mod:`hfssl.wise_ft`)."""
    result = wise_ft(args.model_a, args.model_b, parse_alphas(args.alpha), args.output, recipe_path=args.recipe,
                     save_alpha=args.save_alpha, device=args.device)
    best = max(result.alphas, key=lambda alpha: result.alphas[alpha][result.reference]["top1"])
    print(f"hfssl: WiSE-FT over {len(result.alphas)} alphas (best reference top-1 at alpha={best:g}): "
          + ", ".join(str(path) for path in result.paths.values()))
    return 0


def _exit_codes_text() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hfssl", description="Hugging Face-native self-supervised learning",
                                     epilog=_exit_codes_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    commands = parser.add_subparsers(dest="command", required=True)
    subparsers = {
        "train": commands.add_parser("train", help="train a recipe"),
        "export": commands.add_parser("export", help="write the transferable part of a run "
                                                      "(a plain transformers model with its processor)"),
        "eval": commands.add_parser("eval", help="kNN / linear / other protocols on a model"),
        "embed": commands.add_parser("embed", help="write a model's features of a whole data set to a file "
                                                    "datasets reads (Parquet or save_to_disk)"),
        "push": commands.add_parser("push", help="publish a run to the Hugging Face Hub"),
        "card": commands.add_parser("card", help="regenerate a run's model card"),
        "compare": commands.add_parser("compare", help="runs side by side: one table of their settings, results and "
                                                        "cost, with plots (Markdown and one HTML page)"),
        "sweep": commands.add_parser("sweep", help="train a recipe over a grid of settings and seeds (resumable), "
                                                    "then compare the runs"),
        "wise-ft": commands.add_parser("wise-ft", help="interpolate a zero-shot and a fine-tuned image-text model "
                                                        "(WiSE-FT) and score zero-shot accuracy against the mix"),
    }
    for name, adder in (("train", _add_train_arguments), ("export", _add_export_arguments),
                        ("eval", add_eval_arguments), ("embed", _add_embed_arguments), ("push", add_push_arguments),
                        ("card", add_card_arguments), ("compare", _add_compare_arguments),
                        ("sweep", add_sweep_arguments), ("wise-ft", _add_wise_ft_arguments)):
        adder(subparsers[name])
        # --debug after the command too; SUPPRESS keeps the value given before it.
        subparsers[name].add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                      help="show the traceback of an error instead of one line")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``hfssl`` command and return its exit code; as the ``hfssl`` program itself (``argv`` not
    given: the console script, ``python -m hfssl.cli``) the process then ends through :func:`exit_now`."""
    code = _main(argv)
    if argv is None:
        exit_now(code)
    return code


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    # Overrides may follow options (``train R --output-dir D k=v``), which argparse's positional
    # matching does not allow: collect the leftovers that look like ``key=value`` for ``train``.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "command", None) != "train" or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "matplotlib", "PIL", "tensorboard"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handler = {"train": run_train, "export": run_export, "eval": run_eval, "embed": run_embed, "push": run_push,
               "card": run_card, "compare": run_compare, "sweep": run_sweep,
               "wise-ft": run_wise_ft}[args.command]
    debug = args.debug or str(args.log_level).upper() == "DEBUG"
    try:
        return handler(args)
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        signum = getattr(interrupt, "signum", signal.SIGINT)  # InterruptedAtOnce: a second Ctrl-C
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"hfssl {args.command}: interrupted ({name}); nothing more was saved", file=sys.stderr)
        return 128 + signum  # the shell's convention: 130 for Ctrl-C (EXIT_INTERRUPTED), 143 for SIGTERM
    except (HfsslError, ValueError, FileNotFoundError, OSError, KeyError) as error:
        if debug:
            raise
        print(f"hfssl {args.command}: error: {_message(error)}", file=sys.stderr)
        return exit_code(error)


def exit_code(error: BaseException) -> int:
    """The documented exit code of a user error (:data:`hfssl.errors.EXIT_CODES`)."""
    if isinstance(error, HfsslError):
        return error.exit_code
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return EXIT_STORAGE
    return EXIT_USAGE


def _message(error: BaseException) -> str:
    """One line for the user: a full disk says so, a ``KeyError`` shows its key without quotes."""
    if isinstance(error, OSError) and not isinstance(error, HfsslError) and error.errno in (
            errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        # A write without its own message (a picture): the path and the space that is free there.
        return str(storage_error(error, Path(error.filename or "."), "file",
                                 fix="the files written before it are intact"))
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
