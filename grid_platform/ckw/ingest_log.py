"""Spool of CKW call attempts and rejected records, one JSON-lines file per run.

Each line is written and flushed as it happens, before anything is loaded into the
warehouse: a crash or a failed load later in the run never loses the log. The
``ckw_api_health_log``/``ckw_rejects`` loader merges spooled lines on their keys (so a
line loaded twice is still one row) and only then removes the files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from grid_platform.ckw.client import Attempt
from grid_platform.ckw.normalise import Reject


class IngestLog:
    def __init__(self, spool_dir: Path, run_id: str):
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.path = spool_dir / f"{run_id}.jsonl"
        self.attempts = 0
        self.rejects = 0

    def _append(self, line: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def attempt(self, attempt: Attempt) -> None:
        self.attempts += 1
        self._append({"kind": "attempt", **attempt.as_row()})

    def reject(self, reject: Reject) -> None:
        self.rejects += 1
        self._append({"kind": "reject", **reject.as_row(self.run_id, datetime.now(UTC))})

    def bad_body(self, endpoint: str, reason: str, body: str) -> None:
        self.reject(Reject(endpoint, reason, body))


@dataclass
class SpoolSnapshot:
    files: list[Path]
    attempts: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    torn_lines: int = 0

    def remove(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)


def read_spool(spool_dir: Path) -> SpoolSnapshot:
    """Everything spooled so far; a line torn by a crash mid-write is counted and skipped."""
    files = sorted(spool_dir.glob("*.jsonl")) if spool_dir.exists() else []
    snapshot = SpoolSnapshot(files=files)
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                snapshot.torn_lines += 1
                continue
            kind = record.pop("kind", None)
            if kind == "attempt":
                snapshot.attempts.append(record)
            elif kind == "reject":
                snapshot.rejects.append(record)
    return snapshot
