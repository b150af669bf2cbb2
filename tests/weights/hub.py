"""The Hugging Face hub's HTTP layout, written as static files and served by nginx (a test double of the hub).

No hub-compatible server can reach its upstream here, so this writes what huggingface.co answers for one model
repository at one commit, and nginx (the real server `start_nginx` runs) serves it; `HF_ENDPOINT` (or the spec's
`storage.endpoint`) points huggingface_hub at it. What huggingface_hub reads, and so what is laid out:

- `GET /api/models/ORG/REPO[/revision/REV]` (model_info; `?blobs=true` adds sizes, blob ids and LFS hashes): the
  commit sha and the siblings; for the branch and for the commit itself. An unknown revision answers 404 with
  `X-Error-Code: RevisionNotFound`, as the hub does.
- `GET /api/models/ORG/REPO/tree/COMMIT` (list_repo_tree, which snapshot_download calls): files with oid and lfs.
- `HEAD/GET /ORG/REPO/resolve/REV/FILE`: the bytes, with `X-Repo-Commit`, and for LFS files `X-Linked-Etag`
  (the sha256) and `X-Linked-Size`; plain files carry their git blob sha1 as ETag.
- A private repository answers 401 with `X-Error-Code: RepoNotFound` unless `Authorization: Bearer TOKEN` is sent.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
POINTER_SIZE = 134


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    path: str
    size: int
    sha256: str
    blob_id: str
    lfs: bool


def _files(model: Path) -> list[HubFile]:
    out = []
    for f in sorted(p for p in model.rglob("*") if p.is_file()):
        data = f.read_bytes()
        rel = f.relative_to(model).as_posix()
        lfs = rel.endswith(LFS_SUFFIXES)
        sha = hashlib.sha256(data).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
        out.append(HubFile(rel, len(data), sha, git_blob_sha1(pointer if lfs else data), lfs))
    return out


def hub_repo_layout(www: Path, repo: str, model: Path, commit: str, *, branch: str = "main",
                    token: str | None = None, serve: dict[str, bytes] | None = None) -> str:
    """Write `model` as hub repository `repo` at `commit` (also reachable as `branch`) under `www`.

    Returns the nginx locations that add the hub's headers. `serve` replaces some files' bytes as served (the
    listing keeps the true sizes and hashes): an origin that sends corrupt data. `token` makes the repo private.
    """
    files = _files(model)
    api = www / "api" / "models" / repo
    siblings = [{"rfilename": f.path, "size": f.size, "blobId": f.blob_id,
                 **({"lfs": {"size": f.size, "sha256": f.sha256, "pointerSize": POINTER_SIZE}} if f.lfs else {})}
                for f in files]
    info = {"_id": "0" * 24, "id": repo, "modelId": repo, "sha": commit, "private": token is not None,
            "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings}
    for rev in (branch, commit):
        (api / "revision").mkdir(parents=True, exist_ok=True)
        (api / "revision" / rev).write_text(json.dumps(info))
    tree = [{"type": "file", "path": f.path, "size": f.size, "oid": f.blob_id,
             **({"lfs": {"oid": f.sha256, "size": f.size, "pointerSize": POINTER_SIZE}} if f.lfs else {})}
            for f in files]
    (api / "tree").mkdir(parents=True, exist_ok=True)
    (api / "tree" / commit).write_text(json.dumps(tree))
    guard = (f'if ($http_authorization != "Bearer {token}") {{ add_header X-Error-Code RepoNotFound always; '
             "return 401; }" if token else "")
    locations = [  # model_info without a revision asks for the default branch
        f"location = /api/models/{repo} {{ default_type application/json; {guard} "
        f"try_files /api/models/{repo}/revision/{branch} =404; }}",
        f"location /api/models/{repo}/ {{ default_type application/json; {guard} "
        f"try_files $uri @{_name(repo)}_norev; }}",
        f"location @{_name(repo)}_norev {{ add_header X-Error-Code RevisionNotFound always; return 404; }}",
    ]
    for f in files:
        for rev in (branch, commit):
            target = www / repo / "resolve" / rev / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            if serve and f.path in serve:
                target.write_bytes(serve[f.path])
            else:
                shutil.copyfile(model / f.path, target)
            etag = (f'add_header X-Linked-Etag \'"{f.sha256}"\'; add_header X-Linked-Size {f.size};' if f.lfs
                    else f"add_header ETag '\"{f.blob_id}\"';")
            locations.append(f"location = /{repo}/resolve/{rev}/{f.path} {{ etag off; {guard} "
                             f"add_header X-Repo-Commit {commit}; {etag} }}")
    return "\n    ".join(locations)


def _name(repo: str) -> str:
    return repo.replace("/", "_").replace("-", "_").replace(".", "_")
