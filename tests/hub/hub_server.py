"""A small Hugging Face Hub on 127.0.0.1 for the publishing tests (stdlib ``http.server`` in a thread).

It speaks the part of the Hub protocol that huggingface_hub 2.x uses to create repos and commits
and that transformers uses to download files, read from huggingface_hub's source
(``hf_api.py``, ``_commit_api.py``, ``lfs.py``, ``file_download.py``, ``utils/_http.py``):

* ``GET /api/agent-harnesses`` (an empty registry: huggingface_hub's agent detection),
  ``POST /api/repos/create`` (409 when the repo exists; a new repo gets an initial commit with
  ``.gitattributes``, as on the Hub), ``GET /api/whoami-v2``, ``POST /api/validate-yaml``
  (metadata parsed with huggingface_hub's ``ModelCard``, 400 with ``errors`` when invalid);
* ``POST /api/models/{repo}/preupload/{rev}`` (``uploadMode`` lfs for binary / weight / image
  files, ``oid`` of the file already at that path), ``POST /{repo}.git/info/lfs/objects/batch``
  (basic transfer: upload ``href`` on this server; no actions for objects already stored),
  ``PUT /lfs-upload/{repo}/{oid}`` (sha256 and size checked; objects are stored per repo), ``POST /api/models/{repo}/commit/{rev}``
  (NDJSON: ``header``, ``file`` base64, ``lfsFile``, ``deletedFile``, ``deletedFolder``; applied
  atomically or not at all);
* ``POST /api/models/{repo}/branch/{branch}``, ``GET /api/models/{repo}/refs``,
  ``GET /api/models/{repo}[/revision/{rev}]`` (model info with siblings),
  ``GET /api/models/{repo}/tree/{rev}[/{path}]``;
* ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: regular files answer 200 with ``ETag`` (git blob
  sha1) and ``X-Repo-Commit``; LFS files answer 302 with ``Location`` on another host name
  (``localhost`` instead of ``127.0.0.1``, like the Hub's CDN), ``X-Linked-Etag`` (sha256) and
  ``X-Linked-Size``; misses carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
  ``EntryNotFound``). ``GET /cdn/{repo}/{oid}`` serves LFS content without authentication.

Writes need ``Authorization: Bearer <token>`` with a token in ``tokens``; private repos need it
for reads too. Every request is recorded in ``requests`` (method, path, headers, body), and
``fail(method, pattern, times, status)`` makes the next matching requests fail, to test retries.
Requests that match no route are recorded in ``unhandled`` and answered 404.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".png", ".jpg", ".jpeg", ".npy", ".npz", ".msgpack", ".h5")


def git_blob_sha1(content: bytes) -> str:
    """Git's blob id: sha1 of ``b"blob <size>\\0" + content`` (what the Hub returns as a regular file's oid)."""
    return hashlib.sha1(b"blob " + str(len(content)).encode() + b"\0" + content).hexdigest()


@dataclass
class StoredFile:
    size: int
    blob_id: str
    content: bytes | None = None  # regular file
    lfs_oid: str | None = None  # sha256 of an LFS file's content


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, StoredFile]
    title: str
    description: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def commit_count(self, branch: str = "main") -> int:
        count, oid = 0, self.branches.get(branch)
        while oid is not None:
            count += 1
            oid = self.commits[oid].parent
        return count


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0


class HubState:
    """Everything the server knows; guarded by one lock."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.lock = threading.Lock()
        self.tokens = dict(tokens)
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[tuple[str, str], bytes] = {}  # (repo id, sha256) -> content
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[str] = []
        self.failures: list[list[Any]] = []  # [method, compiled pattern, remaining, status, echo auth]


class HubServer:
    """Start with ``HubServer().start()``; ``endpoint`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.state = HubState(tokens or {})
        state = self.state

        class Handler(_Handler):
            hub = state

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        Handler.server_port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hub", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- test helpers -------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def unhandled(self) -> list[str]:
        with self.state.lock:
            return list(self.state.unhandled)

    def fail(self, method: str, pattern: str, times: int, status: int = 500, echo_authorization: bool = False) -> None:
        """Answer the next ``times`` requests whose path matches ``pattern`` with ``status``.

        ``echo_authorization`` puts the request's Authorization header into the error message, as a
        misconfigured proxy might: the client must not repeat it anywhere.
        """
        with self.state.lock:
            self.state.failures.append([method, re.compile(pattern), times, status, echo_authorization])

    def repo(self, repo_id: str) -> Repo | None:
        with self.state.lock:
            return self.state.repos.get(repo_id)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Path -> content of every file at the head of ``revision``."""
        with self.state.lock:
            repo = self.state.repos[repo_id]
            commit = repo.commits[repo.branches[revision]]
            return {path: (entry.content if entry.content is not None else self.state.lfs[(repo_id, entry.lfs_oid)])
                    for path, entry in commit.files.items()}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    hub: HubState
    server_port: int

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests read ``requests`` instead

    # --- plumbing -------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self._record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        extra = dict(headers or {})
        if code:
            extra["X-Error-Code"] = code
        extra["X-Error-Message"] = message
        self._json(status, {"error": message}, extra)

    def _user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return self.hub.tokens.get(header[len("Bearer "):])
        return None

    def _handle(self) -> None:
        body = self._read_body() if self.command in ("POST", "PUT") else b""
        self._record = RecordedRequest(self.command, self.path, dict(self.headers.items()), body)
        with self.hub.lock:
            self.hub.requests.append(self._record)
            for failure in self.hub.failures:
                method, pattern, remaining, status, echo = failure
                if remaining > 0 and method == self.command and pattern.search(urlsplit(self.path).path):
                    failure[2] -= 1
                    echoed = f" (request had Authorization: {self.headers.get('Authorization')})" if echo else ""
                    self._error(status, "injected server error" + echoed)
                    return
        try:
            handled = self._route(body)
        except Exception as error:  # a server bug must show as a 500 with the reason, not a hang
            self._error(500, f"fake hub error: {type(error).__name__}: {error}")
            raise
        if not handled:
            with self.hub.lock:
                self.hub.unhandled.append(f"{self.command} {self.path}")
            self._error(404, f"no route for {self.command} {self.path}")

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle  # noqa: N815 - stdlib naming

    # --- routing --------------------------------------------------------------------------
    def _route(self, body: bytes) -> bool:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        method = self.command
        if method == "GET" and path == "/api/whoami-v2":
            return self._whoami()
        if method == "GET" and path == "/api/agent-harnesses":  # huggingface_hub's agent detection registry
            self._json(200, {"standardEnvVars": [], "harnesses": {}})
            return True
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(body or b"{}"))
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body or b"{}"))
        match = re.fullmatch(r"/lfs-upload/([^/]+/[^/]+)/([0-9a-f]{64})", path)
        if match and method == "PUT":
            return self._lfs_upload(match.group(1), match.group(2), body)
        match = re.fullmatch(r"/cdn/([^/]+/[^/]+)/([0-9a-f]{64})", path)
        if match and method in ("GET", "HEAD"):
            return self._cdn(match.group(1), match.group(2))
        match = re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if match and method == "POST":
            return self._lfs_batch(match.group(1), json.loads(body))
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)(/.*)?", path)
        if match:
            return self._api_model(method, match.group(1), match.group(2) or "", body, query)
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if match and method in ("GET", "HEAD"):
            return self._resolve(match.group(1), unquote(match.group(2)), unquote(match.group(3)))
        return False

    def _api_model(self, method: str, repo_id: str, rest: str, body: bytes, query: dict[str, list[str]]) -> bool:
        match = re.fullmatch(r"/preupload/([^/]+)", rest)
        if match and method == "POST":
            return self._preupload(repo_id, unquote(match.group(1)), json.loads(body))
        match = re.fullmatch(r"/commit/([^/]+)", rest)
        if match and method == "POST":
            return self._commit(repo_id, unquote(match.group(1)), body)
        match = re.fullmatch(r"/branch/(.+)", rest)
        if match and method == "POST":
            return self._create_branch(repo_id, unquote(match.group(1)), json.loads(body or b"{}"))
        if rest == "/refs" and method == "GET":
            return self._refs(repo_id)
        match = re.fullmatch(r"/tree/([^/]+)(/.*)?", rest)
        if match and method == "GET":
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._tree(repo_id, unquote(match.group(1)), unquote((match.group(2) or "/")[1:]), recursive)
        match = re.fullmatch(r"(?:/revision/([^/]+))?", rest)
        if match and method == "GET":
            return self._model_info(repo_id, unquote(match.group(1) or "main"))
        return False

    # --- lookups (call with the lock held) ------------------------------------------------
    def _readable_repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and self._user() != repo_id.split("/")[0]):
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
            return None
        return repo

    def _writable_repo(self, repo_id: str) -> Repo | None:
        user = self._user()
        if user is None:
            self._error(401, "Invalid credentials in Authorization header")
            return None
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
            return None
        if repo_id.split("/")[0] != user:
            self._error(403, f"{user} cannot write to {repo_id}")
            return None
        return repo

    def _commit_at(self, repo: Repo, revision: str) -> Commit | None:
        oid = repo.branches.get(revision, revision if revision in repo.commits else None)
        if oid is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return None
        return repo.commits[oid]

    # --- endpoints -------------------------------------------------------------------------
    def _whoami(self) -> bool:
        user = self._user()
        if user is None:
            self._error(401, "Invalid credentials in Authorization header")
        else:
            self._json(200, {"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token"}})
        return True

    def _create_repo(self, payload: dict[str, Any]) -> bool:
        user = self._user()
        if user is None:
            self._error(401, "Invalid credentials in Authorization header")
            return True
        owner = payload.get("organization") or user
        repo_id = f"{owner}/{payload['name']}"
        url = f"http://127.0.0.1:{self.server_port}/{repo_id}"
        if payload.get("type", "model") != "model":
            self._error(400, "only model repos in this fake Hub")
            return True
        if owner != user:
            self._error(403, f"You don't have the rights to create a model under the namespace {owner}")
            return True
        with self.hub.lock:
            if repo_id in self.hub.repos:
                self._json(409, {"error": "You already created this model repo", "url": url})
                return True
            repo = Repo(repo_id, private=payload.get("visibility") == "private")
            initial = Commit(uuid.uuid4().hex + uuid.uuid4().hex[:8], None,
                             {".gitattributes": StoredFile(len(GITATTRIBUTES), git_blob_sha1(GITATTRIBUTES), GITATTRIBUTES)},
                             "initial commit", "")
            repo.commits[initial.oid] = initial
            repo.branches["main"] = initial.oid
            self.hub.repos[repo_id] = repo
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})
        return True

    def _validate_yaml(self, payload: dict[str, Any]) -> bool:
        from huggingface_hub import ModelCard

        content = payload.get("content", "")
        try:
            data = ModelCard(content, ignore_metadata_errors=False).data.to_dict()
        except Exception as error:  # the Hub answers 400 with the reasons
            self._json(400, {"errors": [{"message": str(error)}], "warnings": []})
            return True
        warnings = [] if data else [{"message": "empty or missing yaml metadata in repo card"}]
        self._json(200, {"errors": [], "warnings": warnings})
        return True

    def _preupload(self, repo_id: str, revision: str, payload: dict[str, Any]) -> bool:
        with self.hub.lock:
            repo = self._writable_repo(repo_id)
            if repo is None:
                return True
            commit = self._commit_at(repo, revision)
            if commit is None:
                return True
            files = []
            for item in payload["files"]:
                sample = base64.b64decode(item["sample"])
                is_lfs = item["path"].endswith(LFS_SUFFIXES) or b"\0" in sample or item["size"] > 10_000_000
                existing = commit.files.get(item["path"])
                oid = None
                if existing is not None:
                    oid = existing.lfs_oid if existing.lfs_oid else existing.blob_id
                files.append({"path": item["path"], "uploadMode": "lfs" if is_lfs else "regular",
                              "shouldIgnore": False, "oid": oid})
            self._json(200, {"files": files, "commitOid": commit.oid})
        return True

    def _lfs_batch(self, repo_id: str, payload: dict[str, Any]) -> bool:
        with self.hub.lock:
            if self._writable_repo(repo_id) is None:
                return True
            objects = []
            for item in payload["objects"]:
                entry: dict[str, Any] = {"oid": item["oid"], "size": item["size"], "authenticated": True}
                if (repo_id, item["oid"]) not in self.hub.lfs:
                    entry["actions"] = {"upload": {
                        "href": f"http://127.0.0.1:{self.server_port}/lfs-upload/{repo_id}/{item['oid']}?size={item['size']}",
                        "header": {},
                        "expires_at": "2100-01-01T00:00:00Z",
                    }}
                objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})
        return True

    def _lfs_upload(self, repo_id: str, oid: str, body: bytes) -> bool:
        expected = parse_qs(urlsplit(self.path).query).get("size", [None])[0]
        if hashlib.sha256(body).hexdigest() != oid or (expected is not None and int(expected) != len(body)):
            self._error(400, "uploaded content does not match its oid / size")
            return True
        with self.hub.lock:
            self.hub.lfs[(repo_id, oid)] = body
        self._send(200, b"", content_type="text/plain")
        return True

    def _cdn(self, repo_id: str, oid: str) -> bool:
        with self.hub.lock:
            content = self.hub.lfs.get((repo_id, oid))
        if content is None:
            self._error(404, "no such object")
        else:
            self._send(200, content, {"ETag": f'"{oid}"'}, content_type="application/octet-stream")
        return True

    def _commit(self, repo_id: str, revision: str, body: bytes) -> bool:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        with self.hub.lock:
            repo = self._writable_repo(repo_id)
            if repo is None:
                return True
            if revision not in repo.branches:
                self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                return True
            parent = repo.commits[repo.branches[revision]]
            files = dict(parent.files)
            header: dict[str, Any] = {}
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "header":
                    header = value
                elif key == "file":
                    content = base64.b64decode(value["content"])
                    files[value["path"]] = StoredFile(len(content), git_blob_sha1(content), content)
                elif key == "lfsFile":
                    stored = self.hub.lfs.get((repo_id, value["oid"]))
                    if stored is None:
                        # Validate everything before changing anything: no half-made commit.
                        self._error(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                        return True
                    pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{value['oid']}\n"
                               f"size {len(stored)}\n").encode()
                    files[value["path"]] = StoredFile(len(stored), git_blob_sha1(pointer), lfs_oid=value["oid"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {path: entry for path, entry in files.items() if not path.startswith(prefix)}
                else:
                    self._error(400, f"unknown commit operation {key!r}")
                    return True
            if "parentCommit" in header and header["parentCommit"] != parent.oid:
                self._error(412, "A commit has happened since. Please refresh and try again.")
                return True
            oid = hashlib.sha1(f"{parent.oid}{time.time_ns()}{uuid.uuid4()}".encode()).hexdigest()
            repo.commits[oid] = Commit(oid, parent.oid, files, header.get("summary", ""), header.get("description", ""))
            repo.branches[revision] = oid
        self._json(200, {"success": True, "commitOid": oid,
                         "commitUrl": f"http://127.0.0.1:{self.server_port}/{repo_id}/commit/{oid}"})
        return True

    def _create_branch(self, repo_id: str, branch: str, payload: dict[str, Any]) -> bool:
        with self.hub.lock:
            repo = self._writable_repo(repo_id)
            if repo is None:
                return True
            if branch in repo.branches:
                self._error(409, f"Reference already exists: refs/heads/{branch}")
                return True
            start = self._commit_at(repo, payload.get("startingPoint") or "main")
            if start is None:
                return True
            repo.branches[branch] = start.oid
        self._json(200, {})
        return True

    def _refs(self, repo_id: str) -> bool:
        with self.hub.lock:
            repo = self._readable_repo(repo_id)
            if repo is None:
                return True
            branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
                        for name, oid in repo.branches.items()]
        self._json(200, {"branches": branches, "tags": [], "converts": []})
        return True

    def _model_info(self, repo_id: str, revision: str) -> bool:
        with self.hub.lock:
            repo = self._readable_repo(repo_id)
            if repo is None:
                return True
            commit = self._commit_at(repo, revision)
            if commit is None:
                return True
            siblings = [{"rfilename": path} for path in sorted(commit.files)]
        self._json(200, {"id": repo_id, "modelId": repo_id, "sha": commit.oid, "private": repo.private,
                         "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
                         "siblings": siblings, "lastModified": "2026-01-01T00:00:00.000Z",
                         "createdAt": "2026-01-01T00:00:00.000Z"})
        return True

    def _tree(self, repo_id: str, revision: str, folder: str, recursive: bool) -> bool:
        with self.hub.lock:
            repo = self._readable_repo(repo_id)
            if repo is None:
                return True
            commit = self._commit_at(repo, revision)
            if commit is None:
                return True
            prefix = folder.strip("/") + "/" if folder.strip("/") else ""
            entries, folders = [], set()
            for path, entry in sorted(commit.files.items()):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix):]
                if "/" in rest and not recursive:
                    folders.add(prefix + rest.split("/")[0])
                    continue
                if recursive:
                    parts = rest.split("/")[:-1]
                    folders.update(prefix + "/".join(parts[: index + 1]) for index in range(len(parts)))
                item: dict[str, Any] = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": path}
                if entry.lfs_oid:
                    item["lfs"] = {"oid": entry.lfs_oid, "size": entry.size, "pointerSize": 130}
                entries.append(item)
            if prefix and not entries and not folders:
                self._error(404, f"{folder} not found", "EntryNotFound")
                return True
            entries += [{"type": "directory", "oid": hashlib.sha1(name.encode()).hexdigest(), "size": 0, "path": name}
                        for name in sorted(folders)]
        self._json(200, entries)
        return True

    def _resolve(self, repo_id: str, revision: str, filename: str) -> bool:
        with self.hub.lock:
            repo = self._readable_repo(repo_id)
            if repo is None:
                return True
            commit = self._commit_at(repo, revision)
            if commit is None:
                return True
            entry = commit.files.get(filename)
            headers = {"X-Repo-Commit": commit.oid}
            if entry is None:
                self._error(404, f"{filename} does not exist at {revision}", "EntryNotFound", headers)
                return True
            if entry.lfs_oid is not None:
                # The Hub redirects LFS files to its CDN, another host: huggingface_hub reads the
                # metadata from this response and drops the Authorization header for the CDN.
                headers.update({
                    "Location": f"http://localhost:{self.server_port}/cdn/{repo_id}/{entry.lfs_oid}",
                    "X-Linked-Etag": f'"{entry.lfs_oid}"',
                    "X-Linked-Size": str(entry.size),
                    "ETag": f'"{entry.blob_id}"',
                })
                self._send(302, b"", headers, content_type="text/plain")
                return True
            headers["ETag"] = f'"{entry.blob_id}"'
            content = entry.content or b""
        self._send(200, content, headers, content_type="application/octet-stream")
        return True

