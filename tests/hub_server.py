"""A small in-memory stand-in for the Hugging Face Hub HTTP API, for tests (stdlib only).

It answers what `huggingface_hub` 2.4 sends for `create_repo`, `create_branch`, `upload_folder`
(preupload + ndjson commit, every file "regular": no LFS/Xet transfer), `repo_info`, `list_repo_tree`,
`hf_hub_download` / `snapshot_download` (HEAD/GET resolve) and `/api/validate-yaml`. Repos keep every commit,
so a branch, a tag-less commit hash or `main` all resolve. Writes need `Authorization: Bearer <token>`.

    server = HubServer(token="hf_test")   # 127.0.0.1, ephemeral port
    server.start(); ...; server.stop()
    server.fail_commits = 500             # the next commits answer 500 (a broken Hub)
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool = False
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # oid -> {path: content}
    messages: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class HubServer:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []  # "METHOD path" of every request, for assertions
        self.fail_commits: int | None = None
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> "HubServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return dict(repo.commits[repo.resolve(revision)])

    def new_commit(self, repo: Repo, branch: str, files: dict[str, bytes], message: str) -> str:
        oid = hashlib.sha1(f"{len(repo.commits)}{message}{sorted(files)}".encode() + b"".join(files.values())).hexdigest()
        repo.commits[oid] = files
        repo.messages[oid] = message
        repo.branches[branch] = oid
        return oid


def _handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        # -- helpers -------------------------------------------------------------------------------------
        def _send(self, status: int, body: bytes | dict | list | None = None, headers: dict | None = None, head=False):
            data = json.dumps(body).encode() if isinstance(body, (dict, list)) else (body or b"")
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            if isinstance(body, (dict, list)):
                self.send_header("Content-Type", "application/json")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def _error(self, status: int, message: str, code: str | None = None, head=False):
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, None if head else {"error": message}, headers, head=head)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {hub.token}"

        def _repo(self, repo_id: str, head=False) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and not self._authorized()):
                self._error(404, "Repository not found", "RepoNotFound", head=head)
                return None
            return repo

        # -- routes --------------------------------------------------------------------------------------
        def do_HEAD(self):
            self._dispatch("HEAD")

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        def _dispatch(self, method: str):
            path = urlparse(self.path).path
            hub.requests.append(f"{method} {path}")
            parts = [unquote(p) for p in path.strip("/").split("/")]
            with hub.lock:
                try:
                    self._route(method, parts)
                except Exception as err:  # noqa: BLE001 - a test server answers 500 and keeps serving
                    self._error(500, f"test hub server error: {err!r}")

        def _route(self, method: str, parts: list[str]):
            head = method == "HEAD"
            if method == "POST" and parts[:3] == ["api", "repos", "create"]:
                return self._create(json.loads(self._body() or b"{}"))
            if method == "POST" and parts == ["api", "validate-yaml"]:
                self._body()
                return self._send(200, {"errors": [], "warnings": []})
            if parts[:2] == ["api", "models"] and len(parts) == 4 and method == "GET":
                repo = self._repo(f"{parts[2]}/{parts[3]}")
                return self._info(f"{parts[2]}/{parts[3]}", repo, "main") if repo else None
            if parts[:2] == ["api", "models"] and len(parts) >= 5:
                repo_id, action, rest = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
                if method == "POST":
                    body = self._body()
                    if not self._authorized():
                        return self._error(401, "Invalid credentials in Authorization header")
                    repo = self._repo(repo_id)
                    if repo is None:
                        return None
                    if action == "preupload":
                        return self._preupload(repo, rest, json.loads(body))
                    if action == "commit":
                        return self._commit(repo_id, repo, rest, body)
                    if action == "branch":
                        if rest not in repo.branches:
                            repo.branches[rest] = repo.branches["main"]
                        return self._send(200, {})
                repo = self._repo(repo_id, head)
                if repo is None:
                    return None
                if action == "revision":
                    return self._info(repo_id, repo, rest)
                if action == "tree":
                    return self._tree(repo, rest.split("/")[0])
            if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
                repo = self._repo(f"{parts[0]}/{parts[1]}", head)
                if repo is None:
                    return None
                return self._resolve(repo, parts[3], "/".join(parts[4:]), head)
            return self._error(404, f"no route for {method} {'/'.join(parts)}", head=head)

        def _create(self, body: dict):
            if not self._authorized():
                return self._error(401, "Invalid credentials in Authorization header")
            repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            url = f"{hub.url}/{repo_id}"
            if repo_id in hub.repos:
                return self._send(409, {"error": "You already created this model repo", "url": url})
            repo = Repo(private=bool(body.get("private")))
            hub.new_commit(repo, "main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, "initial commit")
            hub.repos[repo_id] = repo
            return self._send(200, {"url": url, "name": repo_id, "id": repo_id})

        def _preupload(self, repo: Repo, revision: str, body: dict):
            current = repo.commits.get(repo.resolve(revision) or "", {})
            files = []
            for entry in body.get("files", []):
                item = {"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False}
                if entry["path"] in current:
                    item["oid"] = git_blob_oid(current[entry["path"]])
                files.append(item)
            return self._send(200, {"files": files, "commitOid": repo.resolve(revision)})

        def _commit(self, repo_id: str, repo: Repo, revision: str, body: bytes):
            if hub.fail_commits:
                return self._error(hub.fail_commits, "Internal Error - We're working hard to fix this as soon as possible!")
            parent = repo.resolve(revision)
            if parent is None:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            files = dict(repo.commits[parent])
            summary = ""
            for line in body.decode().splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                key, value = entry["key"], entry["value"]
                if key == "header":
                    summary = value.get("summary", "")
                elif key == "file":
                    if value.get("encoding") != "base64":
                        return self._error(400, "only base64 file entries are supported")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                else:  # lfsFile / deletedFolder / copy: never sent when every file is "regular"
                    return self._error(400, f"unsupported commit entry {key}")
            oid = hub.new_commit(repo, revision, files, summary)
            return self._send(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True})

        def _info(self, repo_id: str, repo: Repo, revision: str):
            oid = repo.resolve(revision)
            if oid is None:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            siblings = [{"rfilename": name} for name in sorted(repo.commits[oid])]
            return self._send(200, {"id": repo_id, "modelId": repo_id, "sha": oid, "private": repo.private, "siblings": siblings})

        def _tree(self, repo: Repo, revision: str):
            oid = repo.resolve(revision)
            if oid is None:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            entries = [
                {"type": "file", "path": name, "size": len(data), "oid": git_blob_oid(data)}
                for name, data in sorted(repo.commits[oid].items())
            ]
            return self._send(200, entries)

        def _resolve(self, repo: Repo, revision: str, filename: str, head: bool):
            oid = repo.resolve(revision)
            if oid is None:
                return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound", head=head)
            data = repo.commits[oid].get(filename)
            if data is None:
                return self._error(404, "Entry not found", "EntryNotFound", head=head)
            headers = {"X-Repo-Commit": oid, "ETag": f'"{git_blob_oid(data)}"'}
            return self._send(200, data, headers, head=head)

    return Handler
