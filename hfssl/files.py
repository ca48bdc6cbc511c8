"""Files are sacred: hfssl deletes only what it wrote, one process per folder, writes keep the umask.

**Manifest.** Every folder hfssl writes (a run directory, an export) holds ``.hfssl-manifest.json``:
the folder's kind (``run`` or ``export``), the run id, and every entry hfssl wrote there, by
relative path:

* ``file``: a file hfssl wrote (or rewrote);
* ``tree``: a folder hfssl created and fills alone (a checkpoint, its staging folder, ``encoder/``,
  the final model's staging folder): removed whole;
* ``dir``: a folder hfssl created to put its files in (``images/``, ``checkpoints/``): removed only
  when it is empty once hfssl's files are gone, so a file a user put there is kept.

``--overwrite``, a restart by ``--resume-or-start`` and an export replacement remove exactly these
entries (:func:`remove_recorded`), never names, never a folder hfssl did not create; a folder
without a manifest is foreign and refused (:func:`check_owned_folder`). What a command wrote is
recorded by :func:`recording`: files that appear or change in the folder while the command runs
(it holds the folder's lock, so no other hfssl process writes there) are its own; the checkpoint
writer records each checkpoint as it lands, so a kill loses no record of one.

**Lock.** :func:`folder_lock` takes an exclusive ``fcntl.flock`` on ``.hfssl.lock`` inside the folder
and writes the holder's pid and command into it. The kernel releases the lock when the process ends,
however it ends, so a crash never leaves a stale lock; a second process is refused with the holder's
pid and command. The lock is re-entrant inside one process (the pipeline holds it around training,
and training takes it again).

**Modes.** Files hfssl writes follow the umask, as ``save_pretrained`` does: atomic writes go
through :func:`atomic_write_text` and staging folders through :func:`make_staging_directory`, which
give ``tempfile``'s private 0600 / 0700 the mode an ordinary ``open`` / ``mkdir`` would have.
"""

from __future__ import annotations

import contextvars
import errno
import fcntl
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hfssl.errors import RunDirectoryError, StorageError

logger = logging.getLogger(__name__)

MANIFEST_FILE = ".hfssl-manifest.json"
LOCK_FILE = ".hfssl.lock"
#: Files of hfssl's own bookkeeping: never recorded, never counted as a folder's content.
BOOKKEEPING = (MANIFEST_FILE, LOCK_FILE)
FILE, DIR, TREE = "file", "dir", "tree"
RUN, EXPORT = "run", "export"
MANIFEST_FORMAT = 1

#: errno values that mean "the storage is full".
FULL_DISK_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}

#: The run id an export records when its caller knows it (``hfssl export`` sets it from the run).
export_run_id: contextvars.ContextVar[str] = contextvars.ContextVar("hfssl_export_run_id", default="")


# ---------------------------------------------------------------- modes


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def directory_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0777 less the umask."""
    return 0o777 & ~current_umask()


def apply_umask(path: str | Path) -> None:
    """Give every file and folder under ``path`` (and ``path`` itself) the mode an ordinary ``open`` /
    ``mkdir`` gives under the current umask: safetensors and ``tempfile`` create theirs 0600 / 0700
    whatever the umask, which would keep a released model from the other users of a machine."""
    path = Path(path)
    files, folders = file_mode(), directory_mode()
    if path.is_symlink():
        return
    if path.is_file():
        os.chmod(path, files)
        return
    for root, directories, names in os.walk(path):
        os.chmod(root, folders)
        for name in names:
            item = Path(root) / name
            if not item.is_symlink():
                os.chmod(item, files)


def make_staging_directory(parent: Path, prefix: str) -> Path:
    """``tempfile.mkdtemp`` with the mode of an ordinary ``mkdir`` (mkdtemp's 0700 would hide a release)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, directory_mode())
    return path


def replace_directory(staging: Path, target: Path) -> None:
    """Swap the complete folder ``staging`` into ``target``: readers see the old folder or the new one, and
    the old one is removed only after the rename."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def atomic_write_text(path: str | Path, text: str, what: str = "file") -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, with the umask's mode.

    A failure (a full disk) removes the temporary file, leaves the previous ``path`` as it was and
    raises :class:`StorageError` naming the path and the space needed.
    """
    path = Path(path)
    data = text.encode("utf-8")
    try:  # creating the temporary file may already meet the full disk
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    except OSError as error:
        raise storage_error(error, path, what, len(data), fix="nothing else was changed") from error
    try:
        os.fchmod(handle, file_mode())
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise storage_error(error, path, what, len(data), fix="nothing else was changed") from error
    return path


# ---------------------------------------------------------------- storage errors


def is_full_disk(error: BaseException) -> bool:
    return getattr(error, "errno", None) in FULL_DISK_ERRNOS or "no space left" in str(error).lower()


def storage_error(error: BaseException, path: Path, what: str, needed: int | None = None,
                  fix: str = "the previous files are intact") -> StorageError:
    """A :class:`StorageError` (exit code 4) naming ``path`` and, for a full disk, the space needed and free."""
    full = is_full_disk(error)
    try:
        free = shutil.disk_usage(existing_parent(path)).free
    except OSError:
        free = None
    if not full and isinstance(error, RuntimeError) and needed is not None and free is not None and free < needed:
        full = True  # torch reports a full disk as "file write failed"
    if full:
        amounts = []
        if needed is not None:
            amounts.append(f"about {megabytes(needed)} needed")
        if free is not None:
            amounts.append(f"{megabytes(free)} free")
        detail = f" ({', '.join(amounts)})" if amounts else ""
        message = f"the disk is full: writing the {what} {path} failed{detail}. Free space on that disk and retry; {fix}"
    else:
        message = f"writing the {what} {path} failed: {error}. Check that the folder is writable; {fix}"
    result = StorageError(message)
    result.errno = getattr(error, "errno", None)
    return result


def existing_parent(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def megabytes(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def tree_size(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file() and not item.is_symlink()) \
        if path.is_dir() else 0


# ---------------------------------------------------------------- manifest


@dataclass
class Manifest:
    """What hfssl wrote in one folder (see the module docstring)."""

    kind: str = RUN
    run_id: str = ""
    entries: dict[str, str] = field(default_factory=dict)
    created: bool = False  # hfssl created the folder itself

    def to_json(self) -> str:
        return json.dumps({"format": MANIFEST_FORMAT, "kind": self.kind, "run_id": self.run_id,
                           "created": self.created, "entries": dict(sorted(self.entries.items()))}, indent=1) + "\n"

    def covers(self, relative: str) -> bool:
        """Whether the file ``relative`` is hfssl's: recorded itself, or inside a recorded tree."""
        if self.entries.get(relative) in (FILE, TREE):
            return True
        parts = relative.split("/")
        return any(self.entries.get("/".join(parts[:index])) == TREE for index in range(1, len(parts)))


def read_manifest(folder: str | Path) -> Manifest | None:
    """The folder's manifest, or ``None`` when it has none. An unreadable one is refused."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        entries = {str(key): str(value) for key, value in data["entries"].items()}
        if any(value not in (FILE, DIR, TREE) for value in entries.values()):
            raise ValueError("unknown entry kind")
        return Manifest(kind=str(data.get("kind", RUN)), run_id=str(data.get("run_id", "")), entries=entries,
                        created=bool(data.get("created", False)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise RunDirectoryError(
            f"{path} is damaged ({error}): hfssl cannot tell which files it wrote in {folder}, so it changes nothing "
            "there. Use another folder, or delete the folder yourself if nothing in it is needed") from error


def write_manifest(folder: str | Path, manifest: Manifest) -> None:
    atomic_write_text(Path(folder) / MANIFEST_FILE, manifest.to_json(), "record of hfssl's files")


@contextmanager
def _manifest_update_lock(folder: Path) -> Iterator[None]:
    """A short lock on the folder itself (a flock on its descriptor) around a read-modify-write of the
    manifest, so that a card or an evaluation never loses the checkpoint a training process records."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the flock


def update_manifest(folder: str | Path, add: dict[str, str] | None = None, remove: Iterable[str] = (),
                    kind: str | None = None, run_id: str | None = None, created: bool | None = None) -> Manifest:
    """Add and remove entries (relative paths) of ``folder``'s manifest, creating it when missing."""
    folder = Path(folder)
    with _manifest_update_lock(folder):
        manifest = read_manifest(folder) or Manifest()
        for name in remove:
            manifest.entries.pop(name, None)
        for name, entry in (add or {}).items():
            if manifest.entries.get(name) == TREE and entry == DIR:
                continue
            manifest.entries[name] = entry
        if kind is not None:
            manifest.kind = kind
        if run_id is not None:
            manifest.run_id = run_id
        if created is not None:
            manifest.created = created
        write_manifest(folder, manifest)
    return manifest


def relative(folder: Path, path: str | Path) -> str:
    path = Path(path)
    return (path.relative_to(folder) if path.is_absolute() else path).as_posix()


def listing(folder: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every entry under ``folder`` (symlinks not followed, bookkeeping files left out):
    ``relative path -> (file | dir, signature)``; a file's signature changes when it is rewritten."""
    folder = Path(folder)
    found: dict[str, tuple[str, tuple[int, ...]]] = {}
    if not folder.is_dir():
        return found
    for root, directories, files in os.walk(folder):
        base = Path(root)
        for name in directories:
            path = base / name
            found[relative(folder, path)] = (DIR, ())
        for name in files:
            path = base / name
            if base == folder and name in BOOKKEEPING:
                continue
            try:
                status = path.lstat()
            except OSError:
                continue
            found[relative(folder, path)] = (FILE, (status.st_ino, status.st_size, status.st_mtime_ns))
    return found


def changes_since(folder: str | Path, before: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, str]:
    """Entries that appeared or were rewritten in ``folder`` since ``before`` (:func:`listing`), as
    manifest entries: a new folder holding a manifest of its own (an export) is one ``tree``."""
    folder = Path(folder)
    after = listing(folder)
    manifest = read_manifest(folder) if (folder / MANIFEST_FILE).is_file() else None
    recorded = [name for name, entry in (manifest.entries if manifest else {}).items() if entry == TREE]
    # A folder whose own manifest is new or rewritten (an export, a nested run) is recorded whole.
    trees = sorted(name for name, (kind, _) in after.items()
                   if kind == DIR and f"{name}/{MANIFEST_FILE}" in after
                   and after[f"{name}/{MANIFEST_FILE}"] != before.get(f"{name}/{MANIFEST_FILE}"))
    trees += [name for name in recorded if name not in trees]
    changed: dict[str, str] = {}
    for name, (kind, signature) in after.items():
        if before.get(name) == (kind, signature):
            continue
        if any(name == tree or name.startswith(tree + "/") for tree in trees):
            continue
        changed[name] = kind
    changed.update({tree: TREE for tree in trees if tree not in recorded and tree in after})
    return changed


@contextmanager
def recording(folder: str | Path, only_with_manifest: bool = True) -> Iterator[None]:
    """Record what appears or changes in ``folder`` while the block runs (also when it fails).

    With ``only_with_manifest`` (the default) nothing is recorded in a folder that has no manifest
    when the block ends: a run folder of an earlier hfssl version stays as it was.
    """
    folder = Path(folder)
    before = listing(folder)
    try:
        yield
    finally:
        if folder.is_dir() and (not only_with_manifest or (folder / MANIFEST_FILE).is_file()):
            changed = changes_since(folder, before)
            if changed:
                try:
                    update_manifest(folder, add=changed)
                except (StorageError, RunDirectoryError) as error:
                    logger.warning("could not record the files written in %s: %s", folder, error)


def foreign_entries(folder: str | Path, manifest: Manifest | None) -> list[str]:
    """Files under ``folder`` that the manifest does not cover (bookkeeping files left out)."""
    if manifest is None:
        return sorted(name for name, (kind, _) in listing(folder).items() if kind == FILE)
    return sorted(name for name, (kind, _) in listing(folder).items() if kind == FILE and not manifest.covers(name))


def remove_recorded(folder: str | Path, manifest: Manifest, keep_manifest: bool = True) -> tuple[list[str], list[str]]:
    """Remove exactly the manifest's entries in ``folder``; returns ``(removed, kept folders)``.

    Trees are removed whole, files one by one, then the recorded folders that are empty (deepest
    first); a recorded folder that still holds a file hfssl did not write is kept. A symlink is
    removed as a link, never followed.
    """
    folder = Path(folder)
    removed, kept = [], []
    for name in sorted(manifest.entries, key=lambda item: (-item.count("/"), item)):
        entry = manifest.entries[name]
        path = folder / name
        if entry == DIR:
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir() and entry == TREE:
            shutil.rmtree(path)
        else:
            continue
        removed.append(name)
    for name in sorted((name for name, entry in manifest.entries.items() if entry == DIR),
                       key=lambda item: (-item.count("/"), item)):
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            try:
                path.rmdir()
                removed.append(name)
            except OSError:
                kept.append(name)
    manifest.entries = {}
    if keep_manifest:
        write_manifest(folder, manifest)
    return removed, kept


def is_inside(path: Path, folder: Path) -> bool:
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


# ---------------------------------------------------------------- lock


@dataclass
class _Held:
    descriptor: int
    count: int
    created: list[Path]


_HELD: dict[str, _Held] = {}


def _key(folder: Path) -> str:
    return os.path.realpath(os.path.abspath(folder))


def lock_holder(folder: str | Path) -> str:
    """``pid N (command)`` of the process that wrote the folder's lock file, for messages."""
    try:
        data = json.loads((Path(folder) / LOCK_FILE).read_text() or "{}")
        return f"pid {data['pid']} ({' '.join(data['command'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its pid is not written yet)"


@contextmanager
def folder_lock(folder: str | Path, what: str, required: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (created when missing, and removed again when the block
    leaves it empty) while the block runs; re-entrant in one process. ``required=False`` (a command
    that only reads the folder: a push, an export to elsewhere) goes on without the lock in a folder
    it may not write, which no other process of this user can change either.

    Raises:
        RunDirectoryError: another process holds it; the message names its pid and command.
    """
    folder = Path(folder)
    key = _key(folder)
    held = _HELD.get(key)
    if held is not None:
        held.count += 1
        try:
            yield
        finally:
            held.count -= 1
        return
    created = []
    for parent in reversed([folder, *folder.parents]):
        if not parent.exists():
            created.append(parent)
    if folder.exists() and not folder.is_dir():
        raise RunDirectoryError(f"{folder} is a file, not a folder; choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = _acquire(folder, what)
    except RunDirectoryError as error:
        _remove_empty(created)
        if required or not isinstance(error.__cause__, OSError) or error.__cause__.errno not in (
                errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        logger.info("%s: reading %s without its lock (%s)", what, folder, error.__cause__.strerror)
        yield
        return
    except BaseException:
        _remove_empty(created)
        raise
    _HELD[key] = _Held(descriptor, 1, created)
    try:
        yield
    finally:
        del _HELD[key]
        try:
            (folder / LOCK_FILE).unlink()  # while still holding it: a waiter sees a new inode and retries
        except OSError:
            pass
        os.close(descriptor)
        _remove_empty(created)


def _acquire(folder: Path, what: str) -> int:
    path = folder / LOCK_FILE
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            if is_full_disk(error):
                raise storage_error(error, path, "lock file", 256, fix="nothing was changed") from error
            raise RunDirectoryError(f"cannot create the lock file {path} ({error.strerror}): {what} needs a "
                                    "writable folder; nothing was changed") from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise RunDirectoryError(
                f"{folder} is in use by another hfssl process, {lock_holder(folder)}; nothing was changed. Wait "
                f"for it to finish (or stop it), then run {what} again, or use another folder") from None
        try:
            same = os.fstat(descriptor).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(descriptor)  # the holder removed the file as it let go: take the new one
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("cli.py", "train.py", "__main__.py") and "hfssl" in sys.argv[0]:
        program = "hfssl"  # python -m hfssl.cli / accelerate launch -m hfssl.train
    text = json.dumps({"pid": os.getpid(), "command": [program, *sys.argv[1:]], "what": what})
    os.ftruncate(descriptor, 0)
    os.write(descriptor, text.encode())
    return descriptor


def _remove_empty(created: list[Path]) -> None:
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            break


def holds_lock(folder: str | Path) -> bool:
    """Whether this process holds ``folder``'s lock."""
    return _key(Path(folder)) in _HELD
