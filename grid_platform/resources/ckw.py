"""CKW API access for a run: a retrying client whose every attempt goes to the spool."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from grid_platform.ckw.client import CkwClient, RetryPolicy
from grid_platform.ckw.ingest_log import IngestLog


class CkwApiResource(dg.ConfigurableResource):
    """CKW public API (CKW_API_URL; the local stand-in by default). No credentials: the
    ingested endpoints are public (ckw.md §2)."""

    base_url: str
    spool_dir: str
    timeout_s: float = 30.0
    max_attempts: int = 4
    backoff_base_s: float = 5.0
    max_rate_wait_s: float = 60.0

    def open(self, run_id: str) -> tuple[CkwClient, IngestLog]:
        log = IngestLog(Path(self.spool_dir), run_id)
        client = CkwClient(
            base_url=self.base_url,
            run_id=run_id,
            on_attempt=log.attempt,
            on_bad_body=log.bad_body,
            timeout_s=self.timeout_s,
            retry=RetryPolicy(max_attempts=self.max_attempts, backoff_base_s=self.backoff_base_s,
                              max_rate_wait_s=self.max_rate_wait_s),
        )
        return client, log
