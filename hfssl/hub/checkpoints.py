"""Checkpoints mirrored to a Hub repo branch, and a run continued from one.

``hfssl train ... --hub-checkpoints hf://OWNER/NAME[@BRANCH]`` (:func:`hfssl.pipeline.run`'s
``hub_checkpoints``): after each checkpoint is saved and renamed into place, the main process commits it
to ``BRANCH`` (default :data:`DEFAULT_BRANCH`) of the model repo ``OWNER/NAME`` as ``step-XXXXXXXX/``, in
one commit that also deletes the step folder the branch held before: the branch's head is always one
complete checkpoint (a Hub commit is atomic) and its history holds the earlier ones. The repo (private
when new) and the branch are created, and the token checked, before any training, so a wrong repo id,
a missing token or offline mode stops the run before its folder changes. A failed upload (after
:func:`hfssl.hub.push.with_retries`'s retries) is logged as a warning and training goes on: the
checkpoint on disk is intact and the next checkpoint is mirrored as usual.

``--resume-from hf://OWNER/NAME[@BRANCH]`` (:func:`download_checkpoint`): every process downloads the
branch's newest ``step-*`` folder into the Hugging Face cache (huggingface_hub's file locks let the
processes of one machine share one copy) and the run continues from it as from a local
``--resume-from`` folder, into any ``--output-dir`` (a new one on another machine, say).

The upload runs on the main process between optimiser steps: the other processes wait for it at their
next collective, so a checkpoint's upload time is added to the run's time.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, snapshot_download

from hfssl.errors import ResumeError, UsageError
from hfssl.hub.push import (
    HubPushError,
    check_repo_id,
    hub_endpoint,
    resolve_token,
    scrub,
    with_retries,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_BRANCH", "HUB_PREFIX", "CheckpointMirror", "HubCheckpointRef", "download_checkpoint",
           "is_hub_checkpoint", "parse_hub_checkpoint"]

HUB_PREFIX = "hf://"
DEFAULT_BRANCH = "checkpoints"
_STEP_FOLDER = re.compile(r"step-(\d{8})")


@dataclass(frozen=True)
class HubCheckpointRef:
    """A model repo and the branch its checkpoints are mirrored to."""

    repo_id: str
    branch: str = DEFAULT_BRANCH

    def __str__(self) -> str:
        return f"{HUB_PREFIX}{self.repo_id}@{self.branch}"


def is_hub_checkpoint(value: object) -> bool:
    """Whether a ``--resume-from`` value names a Hub branch (``hf://...``) rather than a folder."""
    return isinstance(value, str) and value.startswith(HUB_PREFIX)


def parse_hub_checkpoint(value: str, option: str = "--hub-checkpoints") -> HubCheckpointRef:
    """``hf://OWNER/NAME[@BRANCH]`` -> :class:`HubCheckpointRef`, checked before any network call."""
    if not is_hub_checkpoint(value):
        raise ValueError(f"{option} {value!r} must be hf://OWNER/NAME or hf://OWNER/NAME@BRANCH "
                         "(a model repo and the branch that holds the checkpoints, default "
                         f"{DEFAULT_BRANCH!r}), e.g. hf://your-name/simclr-digits@{DEFAULT_BRANCH}")
    repo_id, _, branch = value[len(HUB_PREFIX):].partition("@")
    check_repo_id(repo_id, option)
    branch = branch or DEFAULT_BRANCH
    if branch == "main" or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", branch) or ".." in branch:
        raise ValueError(f"{option} {value!r}: {branch!r} is not a branch for checkpoints: use a branch name of "
                         f"letters, digits, '-', '_', '.' or '/' other than 'main' (main holds the published model), "
                         f"e.g. @{DEFAULT_BRANCH}")
    return HubCheckpointRef(repo_id, branch)


class CheckpointMirror:
    """Commits each new checkpoint to a Hub branch (main process); see the module docstring.

    :meth:`open` checks the token and creates the repo and branch: call it before training. The trainer
    calls :meth:`on_checkpoint` after each checkpoint is in place (``train(checkpoint_hooks=...)``).
    """

    retries = 3  # retries of a failed request (429, 5xx, a dropped connection) ...
    wait = 2.0  # ... the first after this many seconds, then twice as long each time

    def __init__(self, ref: HubCheckpointRef) -> None:
        self.ref = ref
        self.token: str | None = None
        self.api: HfApi | None = None

    def open(self) -> CheckpointMirror:
        if constants.HF_HUB_OFFLINE:
            raise UsageError(f"--hub-checkpoints {self.ref} needs the Hub, but HF_HUB_OFFLINE is set: unset "
                             "HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE), or train without --hub-checkpoints")
        self.token = resolve_token()
        self.api = HfApi(endpoint=hub_endpoint(), token=self.token, library_name="hfssl")
        repo_id, branch = self.ref.repo_id, self.ref.branch
        with_retries(lambda: self.api.create_repo(repo_id, private=True, exist_ok=True, repo_type="model"),
                     f"--hub-checkpoints: creating the repo {repo_id}", self.token, self.retries, self.wait)
        with_retries(lambda: self.api.create_branch(repo_id, branch=branch, exist_ok=True, repo_type="model"),
                     f"--hub-checkpoints: creating the branch {branch!r} of {repo_id}", self.token, self.retries,
                     self.wait)
        logger.info("mirroring every checkpoint to %s", self.ref)
        return self

    def on_checkpoint(self, step: int, checkpoint: Path, accelerator: Accelerator) -> None:
        """The trainer's checkpoint hook (:data:`hfssl.training.trainer.CheckpointHook`): the main process pushes."""
        if accelerator.is_main_process:
            self.push(Path(checkpoint))

    def push(self, checkpoint: Path) -> bool:
        """Commit ``checkpoint`` as the branch's only step folder; ``False`` (and a warning) when it failed."""
        if self.api is None:
            raise RuntimeError("CheckpointMirror.open() must be called before push()")
        api, repo_id, branch, name = self.api, self.ref.repo_id, self.ref.branch, checkpoint.name
        files = sorted(path for path in checkpoint.rglob("*") if path.is_file())

        def commit():  # noqa: ANN202 - a CommitInfo
            stale = {path.split("/", 1)[0] for path in api.list_repo_files(repo_id, revision=branch)
                     if _STEP_FOLDER.fullmatch(path.split("/", 1)[0]) and path.split("/", 1)[0] != name}
            operations = [CommitOperationDelete(path_in_repo=f"{folder}/", is_folder=True) for folder in sorted(stale)]
            operations += [CommitOperationAdd(path_in_repo=f"{name}/{path.relative_to(checkpoint).as_posix()}",
                                              path_or_fileobj=str(path)) for path in files]
            return api.create_commit(repo_id, operations, revision=branch, repo_type="model",
                                     commit_message=f"hfssl checkpoint {name}")

        try:
            info = with_retries(commit, f"mirroring checkpoint {checkpoint} to {self.ref}", self.token, self.retries,
                                self.wait)
        except HubPushError as error:
            logger.warning("%s The checkpoint on disk is intact and training goes on (the next checkpoint is "
                           "mirrored as usual).", error)
            return False
        logger.info("mirrored %s to %s (%s)", name, self.ref, info.commit_url)
        return True


def download_checkpoint(value: str) -> Path:
    """The newest checkpoint of a Hub branch (``hf://OWNER/NAME[@BRANCH]``), downloaded into the Hugging
    Face cache: the local folder to resume from."""
    ref = parse_hub_checkpoint(value, "--resume-from")
    if constants.HF_HUB_OFFLINE:
        raise ResumeError(f"--resume-from {value!r} needs the Hub, but HF_HUB_OFFLINE is set: unset HF_HUB_OFFLINE "
                          "(and TRANSFORMERS_OFFLINE), or resume from a local checkpoint folder")
    token = resolve_token_or_none()
    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint, token=token, library_name="hfssl")
    try:  # the branch's head commit and its files: the download reads that commit, whatever is pushed meanwhile
        info = with_retries(lambda: api.model_info(ref.repo_id, revision=ref.branch),
                            f"--resume-from: reading {ref}", token, 3, 2.0)
    except HubPushError as error:
        raise ResumeError(f"{scrub(str(error), token)} Check the repo id and branch (the --hub-checkpoints value of "
                          "the run that wrote them) and your token's read access") from None
    files = [sibling.rfilename for sibling in info.siblings or []]
    steps = sorted({path.split("/", 1)[0] for path in files if _STEP_FOLDER.fullmatch(path.split("/", 1)[0])})
    if not steps:
        raise ResumeError(f"--resume-from {value!r}: {ref} holds no checkpoint folder (step-XXXXXXXX/); it is "
                          "filled by a run with --hub-checkpoints " + str(ref))
    newest = steps[-1]
    root = with_retries(lambda: snapshot_download(ref.repo_id, revision=info.sha, repo_type="model",
                                                  allow_patterns=[f"{newest}/*"], token=token,
                                                  endpoint=endpoint),
                        f"--resume-from: downloading {newest} of {ref}", token, 3, 2.0)
    logger.info("downloaded %s of %s", newest, ref)
    return Path(root) / newest


def resolve_token_or_none() -> str | None:
    """A token when there is one (a private repo needs it); reading a public branch needs none."""
    try:
        return resolve_token()
    except HubPushError:
        return None
