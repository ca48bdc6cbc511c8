"""Where data comes from: a Hugging Face Hub dataset id, a local path, or a built-in source.

``data.source`` in a recipe is read as follows, in this order:

* ``builtin:NAME``: an offline built-in set (:mod:`hfssl.data.builtin`).
* an existing local path:
    - a folder written by ``save_to_disk`` (it holds ``dataset_dict.json`` or ``state.json``):
      ``datasets.load_from_disk``; a single ``Dataset`` is the split ``train``;
    - any other folder: ``datasets.load_dataset(folder)``, which infers the builder from the files
      (``imagefolder`` for images, with labels from class sub-folders; ``parquet``, ``csv``,
      ``json``, ``text``) and the splits from file or folder names (``train/``, ``test.parquet``);
    - a file (``.parquet``, ``.csv``, ``.tsv``, ``.json``, ``.jsonl``, ``.txt``, ``.arrow``): the
      matching builder, as the split ``train``. Image paths inside CSV/JSON files may be relative
      to the file's folder (see :func:`source_base_dir`).
* anything else is a Hub id: ``datasets.load_dataset(source, config_name, split=split)``.

Every failure raises :class:`DataSourceError` (a ``ValueError``) naming the source, split or path
and the fix. Without the Hub (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, or a connection
error) a Hub id raises :class:`HubUnavailableError`, which points to local and built-in sources.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import datasets

from hfssl.data.builtin import BuiltinDataError, load_builtin

logger = logging.getLogger(__name__)
T = TypeVar("T")

BUILTIN_PREFIX = "builtin:"
#: Single-file extension -> (datasets builder, builder keyword arguments).
FILE_BUILDERS: dict[str, tuple[str, dict[str, str]]] = {
    ".parquet": ("parquet", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".txt": ("text", {}),
    ".arrow": ("arrow", {}),
}
_SAVE_TO_DISK_MARKERS = ("dataset_dict.json", "state.json")
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
_ALTERNATIVES = "pass a local path or builtin:digits / builtin:fashion_mnist"


class DataSourceError(ValueError):
    """A data source, split or column that cannot be used; the message names it and the fix."""


class HubUnavailableError(DataSourceError):
    """A Hub dataset id was requested but the Hub cannot be reached (offline mode or no network)."""


class SplitNotFoundError(DataSourceError):
    """The requested split does not exist; ``available`` lists the splits that do."""

    def __init__(self, message: str, available: list[str] | None = None) -> None:
        super().__init__(message)
        self.available = list(available or [])


def source_kind(source: str) -> str:
    """Classify ``source`` as ``"builtin"``, ``"local"`` or ``"hub"``.

    Raises:
        DataSourceError: ``source`` is empty, or is written as a path (``/``, ``./``, ``~``, a file
            extension) that does not exist.
    """
    if not isinstance(source, str) or not source.strip():
        raise DataSourceError(f"data.source must be a Hub dataset id, a local path or builtin:NAME, got {source!r}")
    if source.startswith(BUILTIN_PREFIX):
        return "builtin"
    path = Path(source).expanduser()
    if path.exists():
        return "local"
    # Hub ids are "name" or "owner/name": more slashes, a leading ./ or ~, or a data file
    # extension mean a local path with a typo, which deserves a path error rather than a Hub one.
    looks_like_path = (
        source.startswith(("/", "./", "../", "~", ".\\"))
        or source.count("/") > 1
        or "\\" in source
        or path.suffix.lower() in FILE_BUILDERS
    )
    if looks_like_path:
        raise DataSourceError(
            f"local data path {source!r} does not exist (resolved to {str(path.resolve())!r}); "
            "fix data.source, or use a Hub id or builtin:digits / builtin:fashion_mnist"
        )
    return "hub"


def source_base_dir(source: str) -> Path | None:
    """The folder that relative image paths inside a local source are resolved against.

    A CSV/JSON file's own folder, or the source folder itself; ``None`` for Hub and built-in sources.
    """
    if source_kind(source) != "local":
        return None
    path = Path(source).expanduser().resolve()
    return path if path.is_dir() else path.parent


def hub_offline() -> bool:
    """Whether the Hub is switched off by ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` (now or at import)."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    from_env = any(os.environ.get(name, "").upper() in _TRUE_VALUES for name in names)
    return from_env or bool(datasets.config.HF_HUB_OFFLINE)


def _hub_connection_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        errors += [OfflineModeIsEnabled, LocalEntryNotFoundError]
    except ImportError:  # pragma: no cover - older huggingface_hub
        pass
    try:
        import httpx  # huggingface_hub >= 1.0 talks to the Hub through httpx

        errors.append(httpx.TransportError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import requests

        errors.append(requests.exceptions.ConnectionError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _hub_unavailable(source: str, reason: str) -> HubUnavailableError:
    return HubUnavailableError(f"{source} needs the Hugging Face Hub; {_ALTERNATIVES} as data.source ({reason})")


def _call_hub(source: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a ``datasets`` Hub call, turning offline and connection failures into clear errors."""
    if hub_offline() and not datasets.config.HF_HUB_OFFLINE:
        # The variable was set after `datasets` was imported: datasets would still try the network
        # (and retry for ~20 s), so honour the user's offline request here.
        raise _hub_unavailable(source, "offline mode is on: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set")
    try:
        return function(*args, **kwargs)
    except _hub_connection_errors() as error:
        reason = "offline mode is on: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set" if hub_offline() else (
            f"the Hub could not be reached: {error}"
        )
        raise _hub_unavailable(source, reason) from error
    except datasets.exceptions.DatasetNotFoundError as error:
        if hub_offline():
            raise _hub_unavailable(source, f"offline mode is on and it is not in the local cache: {error}") from error
        raise DataSourceError(
            f"dataset {source!r} was not found on the Hugging Face Hub ({error}); check the id, log in "
            "(`hf auth login`) for a private or gated set, or pass a local path"
        ) from error


def _load_saved_split(path: Path) -> datasets.Dataset:
    state = json.loads((path / "state.json").read_text())
    if not state.get("_data_files"):
        # save_to_disk writes an empty split without data files, and load_from_disk then fails with
        # an IndexError; rebuild it empty so that the caller can report it by name.
        features = datasets.DatasetInfo.from_directory(str(path)).features
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    return datasets.load_from_disk(str(path))


def _load_saved(path: Path) -> datasets.DatasetDict:
    """A ``save_to_disk`` folder as a DatasetDict (a single saved Dataset is the split ``train``)."""
    if (path / "dataset_dict.json").is_file():
        names = json.loads((path / "dataset_dict.json").read_text())["splits"]
        return datasets.DatasetDict({name: _load_saved_split(path / name) for name in names})
    return datasets.DatasetDict({"train": _load_saved_split(path)})


def _load_local(source: str, streaming: bool) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    path = Path(source).expanduser()
    if path.is_dir() and any((path / marker).is_file() for marker in _SAVE_TO_DISK_MARKERS):
        splits = _load_saved(path)
        if streaming:
            return datasets.IterableDatasetDict({name: ds.to_iterable_dataset() for name, ds in splits.items()})
        return splits
    try:
        if path.is_dir():
            loaded = datasets.load_dataset(str(path), streaming=streaming)
        else:
            suffix = path.suffix.lower()
            if suffix not in FILE_BUILDERS:
                raise DataSourceError(
                    f"cannot read the local file {source!r}: its extension {suffix or '(none)'!r} is not one of "
                    f"{', '.join(FILE_BUILDERS)}; point data.source at a data file, an image folder or a "
                    "save_to_disk folder"
                )
            builder, options = FILE_BUILDERS[suffix]
            loaded = datasets.load_dataset(builder, data_files={"train": str(path)}, streaming=streaming, **options)
    except ValueError as error:
        if isinstance(error, DataSourceError) or "corresponds to no data" not in str(error):
            raise
        raise DataSourceError(
            f"a split of the local data source {source!r} is empty (datasets cannot load empty files: {error}); "
            "remove the empty file or folder"
        ) from error
    except (FileNotFoundError, datasets.exceptions.DatasetsError) as error:
        raise DataSourceError(
            f"cannot load the local data source {source!r}: {error}. A folder must hold images (optionally in "
            "class sub-folders and train/ test/ folders), parquet/CSV/JSON/text files, or be written by "
            "save_to_disk"
        ) from error
    return loaded


def writes_datasets_cache(source: str, streaming: bool = False) -> bool:
    """Whether loading ``source`` makes ``datasets`` write Arrow files into its cache: a Hub id, or a
    local data file or folder read by a builder (not a ``save_to_disk`` folder, not a built-in set)."""
    if streaming:
        return False
    kind = source_kind(source)
    if kind == "hub":
        return True
    if kind == "local":
        path = Path(source).expanduser()
        return not (path.is_dir() and any((path / marker).is_file() for marker in _SAVE_TO_DISK_MARKERS))
    return False


def check_cache_writable(folder: str | Path, user: str) -> None:
    """Raise :class:`DataSourceError` (exit code 2) when ``folder`` (a Hugging Face cache) cannot be
    written: probed with a real file, because permission bits say nothing about a read-only file
    system or a process running as root. ``user`` says who writes there and why."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".hfssl-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise DataSourceError(
            f"the Hugging Face cache folder {str(folder)!r} cannot be written ({error.strerror or error}), and {user} "
            "writes there. Fix: point HF_HOME (or HF_DATASETS_CACHE, HF_MODULES_CACHE) at a "
            "writable folder, for example HF_HOME=$TMPDIR/hf-cache, copying what a read-only cache holds if you need it"
        ) from None


def load_source(
    source: str, config_name: str | None = None, *, streaming: bool = False
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load every split of ``source`` (built-in, local path or Hub id) as a ``DatasetDict``."""
    kind = source_kind(source)
    if kind == "builtin":
        try:
            splits = load_builtin(source[len(BUILTIN_PREFIX):])
        except BuiltinDataError as error:
            raise DataSourceError(str(error)) from error
        if streaming:
            return datasets.IterableDatasetDict({name: ds.to_iterable_dataset() for name, ds in splits.items()})
        return splits
    if kind == "local":
        if config_name is not None:
            logger.warning("data.config_name=%r is ignored for the local source %r", config_name, source)
        return _load_local(source, streaming)
    return _call_hub(source, datasets.load_dataset, source, config_name, streaming=streaming)


def list_splits(source: str, config_name: str | None = None) -> dict[str, int | None]:
    """Split name -> number of rows (``None`` where unknown without downloading) of ``source``."""
    if source_kind(source) == "hub":
        names = _call_hub(source, datasets.get_dataset_split_names, source, config_name)
        return {name: None for name in names}
    return {name: len(split) for name, split in load_source(source, config_name).items()}


def describe_splits(splits: dict[str, int | None]) -> str:
    """``"train (1437 rows), test (360 rows)"`` for error messages."""
    if not splits:
        return "(none)"
    return ", ".join(name if rows is None else f"{name} ({rows} rows)" for name, rows in splits.items())


def load_split(
    source: str, split: str, config_name: str | None = None, *, streaming: bool = False
) -> datasets.Dataset | datasets.IterableDataset:
    """Load one split of ``source``.

    Args:
        source: Hub id, local path or ``builtin:NAME``.
        split: split name; for Hub ids, slicing such as ``"train[:10%]"`` is passed to
            ``datasets``. Local and built-in sources take plain split names (cap their size with
            ``data.max_train_samples`` / ``data.max_eval_samples``).
        config_name: the Hub dataset's configuration (``data.config_name``).
        streaming: return a ``datasets.IterableDataset`` instead of a ``datasets.Dataset``.

    Raises:
        SplitNotFoundError: no such split; the message lists the available ones.
        HubUnavailableError: a Hub id without the Hub.
        DataSourceError: any other unusable source.
    """
    kind = source_kind(source)
    if kind == "hub":
        try:
            return _call_hub(source, datasets.load_dataset, source, config_name, split=split, streaming=streaming)
        except ValueError as error:
            if isinstance(error, DataSourceError) or "split" not in str(error).lower():
                raise
            raise SplitNotFoundError(
                f"dataset {source!r} has no split {split!r} ({error}); set data.train_split / data.eval_split"
            ) from error
    splits = load_source(source, config_name, streaming=streaming)
    if split in splits:
        return splits[split]
    available = {name: (len(ds) if isinstance(ds, datasets.Dataset) else None) for name, ds in splits.items()}
    raise SplitNotFoundError(
        f"dataset {source!r} has no split {split!r}; available splits: {describe_splits(available)}. "
        "Set data.train_split / data.eval_split to one of them (split slicing such as 'train[:10%]' works "
        "for Hub ids only; use data.max_train_samples / data.max_eval_samples)",
        list(splits),
    )

