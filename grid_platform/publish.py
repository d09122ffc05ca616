"""Atomic, versioned publication of read-optimised outputs (Parquet, GeoJSON).

Layout (architecture.md): ``<root>/<dataset>/<network_id>/<version>/...`` plus a ``current``
symlink that is switched with one atomic rename once a version is complete, so a reader
resolving ``current`` never sees a half-written version. Each version carries a
``manifest.json`` with the SHA-256 of every file and a content hash over all of them,
which the read API uses as ETag. Publishing identical content again is a no-op: the
current version is kept (idempotent reruns).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MANIFEST = "manifest.json"
CURRENT = "current"


@dataclass(frozen=True)
class Publication:
    dataset: str
    network_id: str
    version: str
    path: Path
    content_hash: str
    files: dict[str, dict]

    def file(self, name: str) -> Path:
        return self.path / name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dataset_dir(root: Path, dataset: str, network_id: str) -> Path:
    for part in (dataset, network_id):
        if not part or "/" in part or part.startswith(".") or part == CURRENT:
            raise ValueError(f"invalid publication path component {part!r}")
    return root / dataset / network_id


def publish(
    root: Path,
    dataset: str,
    network_id: str,
    write: Callable[[Path], None],
    extra: dict | None = None,
) -> Publication:
    """Write a new version with ``write(tmp_dir)`` and switch ``current`` to it atomically.

    If ``write`` raises, nothing is switched and the previous version stays served.
    """
    base = _dataset_dir(root, dataset, network_id)
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    tmp = base / f".tmp-{stamp}-{os.getpid()}"
    tmp.mkdir()
    try:
        write(tmp)
        files = {}
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                rel = p.relative_to(tmp).as_posix()
                files[rel] = {"sha256": _sha256(p), "bytes": p.stat().st_size}
        content_hash = hashlib.sha256(
            "".join(f"{k}:{v['sha256']};" for k, v in files.items()).encode()
        ).hexdigest()
        previous = current(root, dataset, network_id)
        if previous is not None and previous.content_hash == content_hash:
            shutil.rmtree(tmp)
            return previous
        version = f"{stamp}-{content_hash[:8]}"
        manifest = {
            "dataset": dataset,
            "network_id": network_id,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(),
            "content_hash": content_hash,
            "files": files,
            **({"extra": extra} if extra else {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        final = base / version
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    link_tmp = base / f".current-{stamp}-{os.getpid()}"
    os.symlink(version, link_tmp)
    os.replace(link_tmp, base / CURRENT)  # the atomic switch
    return _load(final)


def _load(path: Path) -> Publication:
    m = json.loads((path / MANIFEST).read_text())
    return Publication(m["dataset"], m["network_id"], m["version"], path, m["content_hash"], m["files"])


def current(root: Path, dataset: str, network_id: str) -> Publication | None:
    """The version ``current`` points at, or None when nothing was published yet."""
    link = _dataset_dir(root, dataset, network_id) / CURRENT
    try:
        target = link.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        return None
    return _load(target)


def networks(root: Path, dataset: str) -> list[str]:
    d = root / dataset
    return sorted(p.name for p in d.iterdir() if (p / CURRENT).exists()) if d.exists() else []


def rollback(root: Path, dataset: str, network_id: str, version: str) -> Publication:
    """Point ``current`` back at an older, complete version."""
    base = _dataset_dir(root, dataset, network_id)
    target = base / version
    if not (target / MANIFEST).exists():
        raise FileNotFoundError(f"no complete version {version!r} of {dataset}/{network_id}")
    link_tmp = base / f".current-rollback-{os.getpid()}"
    os.symlink(version, link_tmp)
    os.replace(link_tmp, base / CURRENT)
    return _load(target)


def prune(root: Path, dataset: str, network_id: str, keep: int = 5, min_age_s: float = 86400) -> list[str]:
    """Remove versions beyond the newest ``keep`` that are older than ``min_age_s``; never ``current``."""
    base = _dataset_dir(root, dataset, network_id)
    cur = current(root, dataset, network_id)
    versions = sorted((p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
                       and not p.is_symlink()), key=lambda p: p.name, reverse=True)
    removed = []
    now = time.time()
    for p in versions[keep:]:
        if cur is not None and p.name == cur.version:
            continue
        if now - p.stat().st_mtime >= min_age_s:
            shutil.rmtree(p)
            removed.append(p.name)
    return removed
