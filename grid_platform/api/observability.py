"""Operability of the read API: Prometheus metrics and structured access logs.

``ObservabilityMiddleware`` (outermost, so the 401s of the authentication gate count too)
gives every request an id (a well-formed ``X-Request-ID`` from the caller, else a new one,
echoed in the response), times it, counts it per route template, method and status, and
writes one JSON access-log line (logger ``grid_platform.api.access``). Route labels are
templates (``/api/grid/{network_id}/risks``), never raw paths; a request answered before
routing (401) or by no route is labelled ``unmatched``.

``GET /metrics`` renders the Prometheus text exposition format (0.0.4) itself (no client
library): request counters and latency histograms, and per published dataset and network
the current version (an info gauge), its creation time and the data age in seconds.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grid_platform import publish
from grid_platform.api.publications import PublicationStore

access_log = logging.getLogger("grid_platform.api.access")
log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    return ",".join(f'{n}="{escape_label(v)}"' for n, v in zip(names, values))


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class RequestMetrics:
    """Request counters and latency histograms keyed by (route, method, status)."""

    LABELS = ("route", "method", "status")

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.buckets = buckets
        self._lock = threading.Lock()
        # key -> [count per bucket (non-cumulative, +Inf last), sum of seconds]
        self._series: dict[tuple[str, str, str], tuple[list[int], list[float]]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, str(status))
        index = next((i for i, bound in enumerate(self.buckets) if seconds <= bound), len(self.buckets))
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = ([0] * (len(self.buckets) + 1), [0.0])
            series[0][index] += 1
            series[1][0] += seconds

    def render(self) -> list[str]:
        with self._lock:
            snapshot = {k: (list(c), s[0]) for k, (c, s) in sorted(self._series.items())}
        lines = ["# HELP grid_api_requests_total Requests answered, by route template, method and status.",
                 "# TYPE grid_api_requests_total counter"]
        for key, (counts, _) in snapshot.items():
            lines.append(f"grid_api_requests_total{{{_labels(self.LABELS, key)}}} {sum(counts)}")
        lines += ["# HELP grid_api_request_duration_seconds Request latency, by route template, method and status.",
                  "# TYPE grid_api_request_duration_seconds histogram"]
        for key, (counts, total) in snapshot.items():
            labels = _labels(self.LABELS, key)
            cumulative = 0
            for bound, count in zip([*map(_number, self.buckets), "+Inf"], counts):
                cumulative += count
                lines.append(f'grid_api_request_duration_seconds_bucket{{{labels},le="{bound}"}} {cumulative}')
            lines.append(f"grid_api_request_duration_seconds_sum{{{labels}}} {total!r}")
            lines.append(f"grid_api_request_duration_seconds_count{{{labels}}} {cumulative}")
        return lines


def publication_metrics(store: PublicationStore, now: datetime | None = None) -> list[str]:
    """Current version, creation time and data age per dataset and network."""
    now = now or datetime.now(UTC)
    info, created, age = [], [], []
    if store.configured():
        for dataset_dir in sorted(p for p in store.root.iterdir() if p.is_dir()):
            for network_id in publish.networks(store.root, dataset_dir.name):
                try:
                    entity = store.entity("metrics", dataset_dir.name, network_id)
                except (OSError, ValueError, KeyError) as exc:  # counted as unreadable by /health
                    log.warning("publication %s/%s unreadable: %s", dataset_dir.name, network_id, exc)
                    continue
                if not entity.published:
                    continue
                labels = _labels(("dataset", "network"), (dataset_dir.name, network_id))
                info.append(f'grid_api_publication_info{{{labels},version="{escape_label(entity.version)}"}} 1')
                if entity.created_at:
                    stamp = datetime.fromisoformat(entity.created_at)
                    created.append(f"grid_api_publication_created_timestamp_seconds{{{labels}}} "
                                   f"{stamp.timestamp()!r}")
                    age.append(f"grid_api_data_age_seconds{{{labels}}} {(now - stamp).total_seconds()!r}")
    return [
        "# HELP grid_api_publication_info Current publication version per dataset and network.",
        "# TYPE grid_api_publication_info gauge", *info,
        "# HELP grid_api_publication_created_timestamp_seconds Creation time of the current publication.",
        "# TYPE grid_api_publication_created_timestamp_seconds gauge", *created,
        "# HELP grid_api_data_age_seconds Seconds since the current publication was created.",
        "# TYPE grid_api_data_age_seconds gauge", *age,
    ]


def render_metrics(requests: RequestMetrics, store: PublicationStore) -> str:
    return "\n".join([*requests.render(), *publication_metrics(store)]) + "\n"


class ObservabilityMiddleware:
    """Pure ASGI: request id, latency and status per route template, JSON access log."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # an exception before the response started is answered 500 by Starlette

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe(route, scope["method"], status, seconds)
            principal = scope.get("state", {}).get("principal")
            access_log.info(orjson.dumps({
                "event": "request", "request_id": request_id, "method": scope["method"], "route": route,
                "path": scope["path"], "status": status, "duration_ms": round(seconds * 1e3, 2),
                "network_id": scope.get("path_params", {}).get("network_id"),
                "subject": getattr(principal, "sub", None),
            }).decode())
