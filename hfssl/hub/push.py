"""Publish an hfssl run to the Hugging Face Hub: one atomic commit per repo, never touching the run.

:func:`push_run` uploads a run directory (layout in ARCHITECTURE.md): the full SSL model
(``config.json`` + safetensors), ``recipe.yaml``, ``eval_results.json``, ``images/``, other
top-level artifacts (tokenizers, word vectors), a freshly rendered ``README.md`` whose snippets
name the target repo, and the plain-transformers encoder, either in ``encoder/`` of the same
repo or, with ``encoder_repo_id``, as its own repo whose root loads with
``AutoModel.from_pretrained(encoder_repo_id)`` (with a short card pointing back). ``checkpoints/``
and ``logs/`` (and hidden files) are never uploaded.

Safety properties, each covered by tests against a local Hub server (tests/hub):

* Nothing in the run directory is written: the cards are rendered into a temporary staging
  folder, every other file is read in place.
* The repo ids are validated (``huggingface_hub.utils.validate_repo_id`` plus the ``OWNER/NAME``
  form) and a token is found (``token=``, ``HF_TOKEN``, or ``hf auth login``'s saved token)
  before any network call.
* Each repo gets exactly one ``HfApi.create_commit`` per push, and a commit on the Hub is atomic:
  a failure leaves the remote branch exactly as it was. Server errors (429/5xx) and dropped
  connections are retried with exponential backoff (huggingface_hub already retries the LFS
  transfers themselves); the commit is built again from the files on each attempt.
* The token is never written to a file, logged, or included in an error message: errors are
  re-raised as :class:`HubPushError` with the token scrubbed from their text and without the
  original exception chained (a server may echo request data into its error body).
* ``HF_ENDPOINT`` is read when the push starts, so a process can target a mirror or a test
  server without re-importing huggingface_hub.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
from huggingface_hub.errors import HFValidationError, HfHubHTTPError
from huggingface_hub.utils import validate_repo_id

from hfssl.export import ExportContext
from hfssl.files import folder_lock
from hfssl.hub.card import hfssl_version, read_run, write_encoder_card, write_model_card
from hfssl.hub.run import check_publishable
from hfssl.recipe import load_recipe
from hfssl.registry import method_for_config

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Folders of a run directory that are never uploaded (training state and TensorBoard logs).
EXCLUDED_FOLDERS = frozenset({"checkpoints", "logs"})
#: HTTP statuses worth retrying: rate limiting and server-side failures.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Files up to this size are searched for the token before upload (cards, recipes, configs, JSON).
TOKEN_SCAN_LIMIT = 64 * 1024 * 1024


class HubPushError(OSError):
    """Publishing failed; the message says what failed, why, and what to do (it never holds the token)."""


class MissingTokenError(HubPushError):
    """No Hugging Face token was found; nothing was sent."""


class InvalidRepoIdError(ValueError):
    """A repo id that the Hub would reject; nothing was sent."""


def check_repo_id(repo_id: Any, option: str = "repo_id") -> str:
    """Validate an ``OWNER/NAME`` model repo id before any network call.

    Args:
        repo_id: the id to check.
        option: how the caller names the argument in the error (``--repo-id``).

    Raises:
        InvalidRepoIdError: naming the id, the rule it breaks and the expected form.
    """
    if not isinstance(repo_id, str) or not repo_id:
        raise InvalidRepoIdError(f"{option} must be a Hub repo id like 'your-name/simclr-digits', got {repo_id!r}")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise InvalidRepoIdError(
            f"{option} {repo_id!r} must have the form OWNER/NAME (a user or organisation, a slash, a repo name), "
            "for example 'your-name/simclr-digits'"
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise InvalidRepoIdError(f"{option} {repo_id!r} is not a valid Hub repo id: {error}") from None
    return repo_id


def resolve_token(token: str | None = None) -> str:
    """The token to push with: ``token``, else ``HF_TOKEN``, else the one saved by ``hf auth login``.

    Raises:
        MissingTokenError: when there is none, saying how to provide one.
    """
    token = token or get_token()
    if not token:
        raise MissingTokenError(
            "no Hugging Face token found, so nothing was uploaded: set the HF_TOKEN environment variable to a "
            "token with write access (https://huggingface.co/settings/tokens), or run `hf auth login`"
        )
    return token


def check_online() -> None:
    """Raise :class:`HubPushError` when huggingface_hub's offline mode (``HF_HUB_OFFLINE``) is on."""
    if getattr(constants, "HF_HUB_OFFLINE", False):
        raise HubPushError(
            "HF_HUB_OFFLINE is set, so huggingface_hub refuses every request and nothing was uploaded: "
            "unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) in the shell that runs the push"
        )


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` as set now (huggingface_hub reads it only once, at import), else the Hub."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def scrub(text: str, token: str | None) -> str:
    """``text`` with every occurrence of the token (raw or URL-quoted) replaced by ``hf_***``."""
    if not token:
        return text
    for form in {token, quote(token, safe="")}:
        text = text.replace(form, "hf_***")
    return text


@contextlib.contextmanager
def scrubbed_logs(token: str) -> Iterator[None]:
    """While active, every log record of every logger has the token scrubbed from its message.

    hfssl never logs the token, and huggingface_hub hides the Authorization header, but HTTP client
    libraries log response headers at DEBUG level, and a misbehaving server or proxy can echo the
    token back in them. The record factory is process-wide, so this covers every logger and handler.
    """
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        message = record.getMessage()
        if token in message or quote(token, safe="") in message:
            record.msg, record.args = scrub(message, token), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"), token)
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        if logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(previous)


def _describe_error(error: BaseException, token: str | None) -> str:
    """A short description of an error and its causes, with the token scrubbed.

    An HTTP error reads ``HTTP 500 from POST <url>: <the server's message> (request id ...)``; the
    chain stops there (its cause is the HTTP client's own, redundant exception).
    """
    parts, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(current, HfHubHTTPError) and response is not None:
            request = getattr(response, "request", None)
            where = f" from {request.method} {request.url}" if request is not None else ""
            message = getattr(current, "server_message", None)
            request_id = getattr(current, "request_id", None)
            parts.append(f"HTTP {response.status_code}{where}" + (f": {message.strip()}" if message else "")
                         + (f" (request id {request_id})" if request_id else ""))
            break
        text = str(current).strip() or type(current).__name__
        parts.append(f"{type(current).__name__}: {text}")
        current = current.__cause__ or current.__context__
    return scrub(" <- ".join(parts), token)


def _status_code(error: BaseException) -> int | None:
    current: BaseException | None = error
    seen = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(current, HfHubHTTPError) and response is not None:
            return int(response.status_code)
        current = current.__cause__ or current.__context__
    return None


# Connection-level failures, by class name so that this works whichever HTTP client huggingface_hub
# uses (requests before 1.0, httpx, httpx2 in 2.x).
_TRANSIENT_ERROR_NAMES = frozenset({"TransportError", "NetworkError", "TimeoutException", "RemoteProtocolError",
                                    "ConnectError", "ReadError", "WriteError", "ConnectTimeout", "ReadTimeout",
                                    "Timeout", "ConnectionError", "ChunkedEncodingError"})


def _is_transient(error: BaseException) -> bool:
    status = _status_code(error)
    if status is not None:
        return status in RETRY_STATUSES
    if type(error).__name__ == "OfflineModeIsEnabled":  # a ConnectionError that no retry can fix
        return False
    current: BaseException | None = error
    seen = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError)) or any(
            cls.__name__ in _TRANSIENT_ERROR_NAMES for cls in type(current).__mro__
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _hint(error: BaseException) -> str:
    status = _status_code(error)
    if status == 401:
        return " The Hub rejected the token: check HF_TOKEN (or run `hf auth login` again)."
    if status == 403:
        return " The token has no write access to this namespace: use a write token, or a repo id under your name."
    if isinstance(error, ValueError) and "metadata" in str(error):
        return " The model card's metadata was rejected: regenerate it with `hfssl card DIR` and check its YAML header."
    if (status is not None and status in RETRY_STATUSES) or _is_transient(error):
        return " The Hub is failing or unreachable: try again later; nothing was committed."
    return ""


def with_retries(action: Callable[[], T], what: str, token: str | None, retries: int, wait: float) -> T:
    """Run ``action``; retry on transient errors with exponential backoff, then raise :class:`HubPushError`.

    Args:
        action: the network operation (it must be safe to repeat: an atomic commit, an idempotent create).
        what: a description for logs and errors (``"commit to owner/name"``).
        token: scrubbed from every message.
        retries: retries after the first attempt.
        wait: seconds before the first retry; doubled each time, at most 60 s.
    """
    delay = wait
    for attempt in range(retries + 1):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - every failure becomes a scrubbed HubPushError
            description = _describe_error(error, token)
            if not _is_transient(error) or attempt == retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                # ``from None``: the original exception (and its response body) is not chained,
                # so a server that echoes request data cannot leak the token through a traceback.
                raise HubPushError(f"{what} failed{tries}: {description}.{_hint(error)}") from None
            logger.warning("%s failed (%s); retry %d of %d in %.1f s", what, description, attempt + 1, retries, delay)
            time.sleep(delay)
            delay = min(60.0, delay * 2)
    raise AssertionError("unreachable")  # pragma: no cover


def check_run_dir(run_dir: Path, *, separate_encoder: bool) -> None:
    """Raise ``FileNotFoundError`` naming what a publishable run directory lacks, and how to make it;
    ``ValueError`` for damaged weights and :class:`hfssl.errors.NonFiniteError` for non-finite weights or
    results (:func:`hfssl.hub.run.check_publishable`)."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist: pass the --output-dir of `hfssl train`")
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} has no config.json: pass an hfssl run directory (the --output-dir of `hfssl train`)")
    if not any((run_dir / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        raise FileNotFoundError(f"{run_dir} has no model.safetensors: the run has not saved its model yet")
    if not (run_dir / "encoder" / "config.json").is_file():
        raise FileNotFoundError(
            f"{run_dir} has no encoder/ (the plain-transformers encoder): write it with `hfssl export {run_dir}`"
        )
    if separate_encoder and not any((run_dir / "encoder" / name).is_file()
                                    for name in ("model.safetensors", "model.safetensors.index.json")):
        raise FileNotFoundError(f"{run_dir / 'encoder'} has no model.safetensors: run `hfssl export {run_dir}` again")
    check_publishable(run_dir, "published")  # readable, finite weights and results


def _walk(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name == "__pycache__":
            continue  # hidden files, export/card staging leftovers, caches
        if path.is_dir():
            yield from _walk(path)
        elif path.is_file():
            yield path


def run_files(run_dir: Path, *, include_encoder: bool) -> dict[str, Path]:
    """Path in the repo -> local file, for the run's own repo (``README.md`` excluded: it is regenerated)."""
    files = {}
    for path in _walk(run_dir):
        relative = path.relative_to(run_dir)
        top = relative.parts[0]
        if top in EXCLUDED_FOLDERS or (top == "encoder" and not include_encoder) or relative.as_posix() == "README.md":
            continue
        files[relative.as_posix()] = path
    return files


def encoder_files(run_dir: Path) -> dict[str, Path]:
    """Path in the encoder repo -> local file: the contents of ``run_dir/encoder`` at the repo root."""
    encoder = run_dir / "encoder"
    return {path.relative_to(encoder).as_posix(): path for path in _walk(encoder) if path.name != "README.md"}


def _refuse_token_in_files(files: dict[str, Path], token: str) -> None:
    needle = token.encode()
    for path_in_repo, path in files.items():
        if path.stat().st_size <= TOKEN_SCAN_LIMIT and needle in path.read_bytes():
            raise HubPushError(
                f"refusing to upload {path_in_repo}: it contains your Hugging Face token. Remove the token from "
                f"{path} and push again; nothing was uploaded"
            )


def _push_repo(api: HfApi, repo_id: str, files: dict[str, Path], *, private: bool, revision: str | None,
               commit_message: str, commit_description: str, token: str, retries: int, wait: float
               ) -> dict[str, str]:
    """Create the repo (and branch) if needed, then one commit with every file."""
    repo_url = with_retries(lambda: api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"),
                            f"creating the repo {repo_id}", token, retries, wait)
    if revision is not None and revision != constants.DEFAULT_REVISION:
        with_retries(lambda: api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model"),
                     f"creating the branch {revision!r} of {repo_id}", token, retries, wait)

    def commit() -> Any:
        # Fresh operations on every attempt: huggingface_hub mutates them while uploading.
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
        return api.create_commit(repo_id, operations, commit_message=commit_message,
                                 commit_description=commit_description, revision=revision, repo_type="model")

    total = sum(path.stat().st_size for path in files.values())
    logger.info("uploading %d files (%.1f MB) to %s in one commit", len(files), total / 1e6, repo_id)
    info = with_retries(commit, f"the commit to {repo_id}", token, retries, wait)
    logger.info("pushed %s: %s", repo_id, info.commit_url)
    return {"repo_url": str(repo_url), "commit_url": info.commit_url, "commit_oid": info.oid}


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    encoder_repo_id: str | None = None,
    token: str | None = None,
    retries: int = 4,
    retry_wait: float = 2.0,
) -> dict[str, str]:
    """Upload a run directory to the Hub (see the module docstring for what goes where).

    Args:
        run_dir: an hfssl run directory with ``config.json``, the model weights and ``encoder/``.
        repo_id: ``OWNER/NAME`` of the model repo; created if it does not exist.
        private: create the repo(s) as private (an existing repo keeps its visibility).
        revision: branch to commit to; created from ``main`` when new. Default ``main``.
        commit_message: the commit title (default: "Upload <method> model trained with hfssl").
        encoder_repo_id: ``OWNER/NAME`` of a separate repo for the plain-transformers encoder;
            without it the encoder goes to ``encoder/`` of ``repo_id``.
        token: a Hub token; default ``HF_TOKEN`` or the token saved by ``hf auth login``.
        retries / retry_wait: retries of each network step on 429/5xx/connection errors, and the
            first backoff in seconds (doubled on each retry).

    Returns:
        ``repo_url``, ``commit_url``, ``commit_oid``, ``revision`` and, with ``encoder_repo_id``,
        ``encoder_repo_url``, ``encoder_commit_url``, ``encoder_commit_oid``.

    Raises:
        InvalidRepoIdError: a repo id is malformed (nothing sent).
        MissingTokenError: no token (nothing sent).
        FileNotFoundError: ``run_dir`` is not a complete run directory (nothing sent).
        HubPushError: the Hub refused or kept failing; the message is free of the token.
    """
    run_dir = Path(run_dir)
    check_repo_id(repo_id, "repo_id")
    if encoder_repo_id is not None:
        check_repo_id(encoder_repo_id, "encoder_repo_id")
        if encoder_repo_id == repo_id:
            raise InvalidRepoIdError(
                f"encoder_repo_id must differ from repo_id ({repo_id!r}); leave it out to put the encoder in encoder/"
            )
    if revision is not None and (not revision.strip() or revision.startswith(("/", "refs/")) or ".." in revision):
        raise ValueError(f"revision {revision!r} is not a branch name; pass a branch such as 'v1' or leave it out")
    check_run_dir(run_dir, separate_encoder=encoder_repo_id is not None)
    with folder_lock(run_dir, "hfssl push", required=False):  # no training, overwrite or export changes the run while it uploads
        return _push_checked_run(run_dir, repo_id, token=token, private=private, revision=revision,
                                 commit_message=commit_message, encoder_repo_id=encoder_repo_id, retries=retries,
                                 retry_wait=retry_wait)


def _push_checked_run(run_dir: Path, repo_id: str, *, token: str | None, private: bool, revision: str | None,
                      commit_message: str | None, encoder_repo_id: str | None, retries: int,
                      retry_wait: float) -> dict[str, str]:
    token = resolve_token(token)
    check_online()
    endpoint = hub_endpoint()

    __version__ = hfssl_version()
    method = read_run(run_dir).spec.name
    message = commit_message or f"Upload {method} model trained with hfssl"
    description = f"Published with hfssl {__version__} from a run directory (recipe.yaml holds the training recipe)."
    api = HfApi(endpoint=endpoint, token=token, library_name="hfssl", library_version=__version__)
    staging = Path(tempfile.mkdtemp(prefix="hfssl-push-"))
    try:
        main_files = run_files(run_dir, include_encoder=encoder_repo_id is None)
        main_files["README.md"] = write_model_card(run_dir, repo_id=repo_id, encoder_repo_id=encoder_repo_id,
                                                   output_path=staging / "README.md")
        separate = None
        if encoder_repo_id is not None:
            separate = encoder_files(run_dir)
            separate["README.md"] = write_encoder_card(run_dir, staging / "encoder-README.md", repo_id=repo_id,
                                                       encoder_repo_id=encoder_repo_id)
        _refuse_token_in_files({**main_files, **(separate or {})}, token)
        result: dict[str, str] = {"revision": revision or constants.DEFAULT_REVISION}
        common = {"private": private, "revision": revision, "token": token, "retries": retries, "wait": retry_wait}
        with scrubbed_logs(token):
            if separate is not None:
                # The encoder first, so the run card's link to it works as soon as the card appears.
                encoder_result = _push_repo(api, encoder_repo_id, separate, commit_message=message,
                                            commit_description=description + f" The encoder of {repo_id}.", **common)
                result.update({f"encoder_{key}": value for key, value in encoder_result.items()})
            result.update(_push_repo(api, repo_id, main_files, commit_message=message,
                                     commit_description=description, **common))
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def push_model_to_hub(model: Any, repo_id: str, **kwargs: Any) -> dict[str, str]:
    """Publish an in-memory hfssl model: save it with its encoder into a temporary run directory, then :func:`push_run`.

    When the model was loaded from a run directory (``model.name_or_path``), that run's
    ``recipe.yaml``, ``eval_results.json``, ``images/`` and other top-level artifacts are published
    with it, and its recipe and saved artifacts (the image processor's settings, a tokenizer) shape
    the export, which is the method's own (``MethodSpec.export``).

    Args:
        model: an hfssl model (``HfsslPreTrainedModel``).
        repo_id: ``OWNER/NAME``.
        **kwargs: :func:`push_run`'s keyword arguments (``private``, ``revision``, ``commit_message``,
            ``encoder_repo_id``, ``token``, ``retries``, ``retry_wait``).
    """
    check_repo_id(repo_id, "repo_id")
    if kwargs.get("encoder_repo_id") is not None:
        check_repo_id(kwargs["encoder_repo_id"], "encoder_repo_id")
    resolve_token(kwargs.get("token"))  # fail before saving anything
    check_online()
    spec = method_for_config(model.config)
    name_or_path = getattr(model, "name_or_path", "") or ""
    source = Path(name_or_path) if name_or_path and Path(name_or_path).is_dir() else None
    with tempfile.TemporaryDirectory(prefix="hfssl-model-") as folder:
        run_dir = Path(folder) / "run"
        model.save_pretrained(run_dir)
        if source is not None:
            for path in sorted(source.iterdir()):
                if path.name.startswith(".") or path.name in EXCLUDED_FOLDERS or path.name in {
                        "config.json", "model.safetensors", "model.safetensors.index.json", "README.md", "encoder"}:
                    continue
                if path.is_dir():
                    shutil.copytree(path, run_dir / path.name)
                elif path.is_file() and not path.name.startswith("model-"):
                    shutil.copy2(path, run_dir / path.name)
        recipe = load_recipe(source / "recipe.yaml") if source is not None and (source / "recipe.yaml").is_file() else None
        spec.export(model, run_dir / "encoder", ExportContext(recipe=recipe, run_dir=run_dir, files_dir=run_dir))
        return push_run(run_dir, repo_id, **kwargs)
