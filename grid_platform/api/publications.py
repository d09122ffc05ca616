"""The read API's data backend: published outputs (docs/publications.md) queried with DuckDB.

Each request resolves the ``current`` version of a dataset with one ``readlink`` and a
manifest cached per version directory (versions are immutable), so a new publication is
served without restart and a running materialisation never blocks a read: the API never
opens the warehouse. Queries run on cursors of one in-memory DuckDB database whose file
access is confined to the publication root and whose configuration is locked.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from grid_platform import publish
from grid_platform.api.sqltemplate import sql_quote

log = logging.getLogger(__name__)


class BackendNotConfigured(RuntimeError):
    """No publication root exists: nothing was ever published on this installation."""


class BackendTimeout(RuntimeError):
    pass


@dataclass(frozen=True)
class Entity:
    """What a fetcher template may read: the network and paths of one publication (trusted)."""

    id: str
    domain: str
    dataset: str
    version: str | None = None
    content_hash: str | None = None
    created_at: str | None = None
    tables: dict[str, str] = field(default_factory=dict)  # Parquet stem -> absolute path
    files: dict[str, str] = field(default_factory=dict)  # relative name -> absolute path

    @property
    def published(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple]


class PublicationStore:
    def __init__(self, root: Path, *, threads: int = 1, timeout_s: float = 30.0, memory_limit: str = "1GB"):
        self.root = Path(root)
        self.timeout_s = timeout_s
        self._manifests: dict[str, publish.Publication] = {}  # "dataset/network" -> current
        self._lock = threading.Lock()
        self._config = {"threads": threads, "memory_limit": memory_limit}
        self._db: duckdb.DuckDBPyConnection | None = None

    def _database(self) -> duckdb.DuckDBPyConnection:
        """The shared in-memory database, (re)opened on first use after ``close``."""
        with self._lock:
            if self._db is None:
                db = duckdb.connect(":memory:", config=self._config)
                for statement in (
                    "SET allowed_directories = [" + sql_quote(str(self.root).rstrip("/") + "/") + "]",
                    "SET enable_external_access = false",
                    "SET parquet_metadata_cache = true",
                    "SET TimeZone = 'UTC'",
                    "SET lock_configuration = true",
                ):
                    db.execute(statement)
                self._db = db
            return self._db

    def configured(self) -> bool:
        return self.root.is_dir()

    def resolve(self, dataset: str, network_id: str) -> publish.Publication | None:
        """The current version, or None when the network has no publication of ``dataset``.

        Only a missing ``current`` pointer means "not published"; an unreadable manifest
        raises, so a broken publication is an error and never an empty (calm) answer.
        """
        if not self.configured():
            raise BackendNotConfigured(str(self.root))
        link = self.root / dataset / network_id / publish.CURRENT
        try:
            version = os.path.basename(os.readlink(link))
        except FileNotFoundError:
            return None
        key = f"{dataset}/{network_id}"
        found = self._manifests.get(key)
        if found is None or found.version != version:
            found = publish.current(self.root, dataset, network_id)
            if found is None:  # the pointer vanished meanwhile
                return None
            with self._lock:
                self._manifests[key] = found
        return found

    def entity(self, domain: str, dataset: str, network_id: str) -> Entity:
        pub = self.resolve(dataset, network_id)
        if pub is None:
            return Entity(id=network_id, domain=domain, dataset=dataset)
        files = {name: str(pub.path / name) for name in pub.files}
        tables = {name[: -len(".parquet")]: path for name, path in files.items()
                  if name.endswith(".parquet") and "/" not in name}
        return Entity(id=network_id, domain=domain, dataset=dataset, version=pub.version,
                      content_hash=pub.content_hash, created_at=self._created_at(pub),
                      tables=tables, files=files)

    def _created_at(self, pub: publish.Publication) -> str | None:
        # The manifest's creation time; the version stamp carries the same instant.
        stamp = pub.version.split("-", 1)[0]
        try:
            return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC).isoformat()
        except ValueError:
            return None

    def run(self, sql: str, params: dict[str, Any], *, limit: int, offset: int) -> QueryResult:
        """Run a rendered statement, fetching ``limit + 1`` rows so truncation can be detected."""
        statement = f"{sql.rstrip()}\nLIMIT {int(limit) + 1} OFFSET {int(offset)}"
        cursor = self._database().cursor()
        timer = threading.Timer(self.timeout_s, cursor.interrupt)
        timer.start()
        started = time.perf_counter()
        try:
            cursor.execute(statement, params)
            columns = [d[0] for d in cursor.description]
            types = [str(d[1]) for d in cursor.description]
            rows = cursor.fetchall()
        except duckdb.InterruptException as exc:
            raise BackendTimeout(f"query exceeded {self.timeout_s}s") from exc
        finally:
            timer.cancel()
            cursor.close()
        log.debug("query took %.1f ms (%d rows)", (time.perf_counter() - started) * 1e3, len(rows))
        return QueryResult(columns, types, rows)

    def freshness(self) -> dict[str, dict[str, Any]]:
        """Per dataset: networks published, unreadable ones, age of the newest publication."""
        now = datetime.now(UTC)
        report: dict[str, dict[str, Any]] = {}
        for dataset_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            newest: str | None = None
            count = unreadable = 0
            for network_id in publish.networks(self.root, dataset_dir.name):
                try:
                    pub = self.resolve(dataset_dir.name, network_id)
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("publication %s/%s unreadable: %s", dataset_dir.name, network_id, exc)
                    unreadable += 1
                    continue
                created = self._created_at(pub) if pub else None
                if created:
                    count += 1
                    newest = max(newest or created, created)
            if count or unreadable:
                age = (now - datetime.fromisoformat(newest)).total_seconds() if newest else None
                report[dataset_dir.name] = {"networks": count, "unreadable": unreadable, "newest": newest,
                                            "age_s": round(age, 1) if age is not None else None}
        return report

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
