"""HTTP client for the CKW public API with bounded retries and a record of every attempt.

Rules (ckw.md §6, §8): 30 s timeout; up to 4 attempts with exponential back-off (5, 10,
20 s by default) plus jitter on transport errors, timeouts, 5xx and unreadable bodies; no
retry on other 4xx; on 429 or an exhausted window (``x-ratelimit-remaining: 0``) wait for
``x-ratelimit-reset`` (milliseconds, clamped to 1..1000 s) when that fits the caller's wait
budget, otherwise defer the call to a later cycle. Every attempt, failed ones included, is
handed to ``on_attempt`` as it happens, so a crash later in the run never loses the log.
The loop itself is ``grid_platform.http_retry``; this module adds the CKW rules to it.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from grid_platform import http_retry

PRICES = "/v1/netzinformationen/energie/dynamische-preise"
TRA = "/v1/netzinformationen/trasignale/{datum}"
PLANT_LIVE = "/v1/netzinformationen/kraftwerke/lutersarni/live"

RESET_MIN_S, RESET_MAX_S = 1.0, 1000.0


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt: a row of the ``ckw_api_health_log`` table."""

    run_id: str
    endpoint: str
    call_seq: int
    attempt: int
    request: str
    checked_at: datetime
    status_code: int | None
    response_time_ms: int
    success: bool
    error_message: str | None
    outcome: str  # ok | http_error | transport_error | rate_limited | deferred | invalid_payload
    ratelimit_limit: int | None
    ratelimit_remaining: int | None
    ratelimit_reset: int | None

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["checked_at"] = self.checked_at.isoformat()
        return row


class CkwError(Exception):
    """Base of the errors a CKW call ends with."""


class CkwUnavailable(CkwError):
    """The call failed on every allowed attempt."""


class CkwDeferred(CkwError):
    """The rate limit forbids calling now; the call belongs to a later cycle."""


class CkwHttpError(CkwError):
    """A non-retryable HTTP status (4xx other than 429)."""

    def __init__(self, message: str, status_code: int):
        super().__init__(message)
        self.status_code = status_code


@dataclass
class CkwResponse:
    payload: Any
    call_seq: int
    request: str


@dataclass(frozen=True)
class RetryPolicy:
    """The CKW retry rules (ckw.md §6, §8) in the terms of ``CkwApiResource``'s settings."""

    max_attempts: int = 4
    backoff_base_s: float = 5.0
    jitter_ratio: float = 0.25
    max_rate_wait_s: float = 60.0

    def http(self, timeout_s: float) -> http_retry.RetryPolicy:
        # Only 429 and 5xx are transient (408 is a client error here); an unreadable body
        # (ValueError) is too. The back-off is not capped: 5, 10, 20 s by default.
        return http_retry.RetryPolicy(
            timeout_s=timeout_s, max_tries=self.max_attempts, backoff_s=self.backoff_base_s,
            backoff_max_s=math.inf, jitter=self.jitter_ratio, max_wait_s=self.max_rate_wait_s,
            transient_statuses=http_retry.OVERLOAD_STATUSES,
            transient_errors=(httpx.TransportError, ValueError))


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value.strip().split()[0]))
    except (ValueError, IndexError):
        return None


def _error_text(response: httpx.Response) -> str:
    """The API's error body, read leniently: keys may be missing or misspelt ('messege')."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:200]
    message = body.get("message") or body.get("messege") or ""
    description = body.get("description") or ""
    return " - ".join(p for p in (str(message), str(description)) if p) or response.reason_phrase


@dataclass
class CkwClient:
    base_url: str
    run_id: str = "adhoc"
    on_attempt: Callable[[Attempt], None] = lambda attempt: None
    # Called with (endpoint, reason, body excerpt) for a 2xx body that is not JSON.
    on_bad_body: Callable[[str, str, str], None] = lambda endpoint, reason, body: None
    timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    transport: httpx.BaseTransport | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        self._http = httpx.Client(
            base_url=self.base_url.rstrip("/"),
            transport=self.transport,
            headers={"accept": "application/json", "user-agent": "grid-platform/0.1"},
        )
        self._policy = self.retry.http(self.timeout_s)
        self._rng = random.Random(self.seed)
        self._call_seq = 0
        # Earliest monotonic time each endpoint may be called again (rate-limit window).
        self._not_before: dict[str, float] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Endpoints -----------------------------------------------------------------------
    def prices(self, start: str, end: str, tariff_name: str, tariff_type: str | None = None) -> CkwResponse:
        params = {"tariff_name": tariff_name, "start_timestamp": start, "end_timestamp": end}
        if tariff_type:
            params["tariff_type"] = tariff_type
        return self.get(PRICES, PRICES, params)

    def tra_signals(self, datum: str) -> CkwResponse:
        return self.get(TRA, TRA.format(datum=datum), {})

    def plant_live(self) -> CkwResponse:
        return self.get(PLANT_LIVE, PLANT_LIVE, {})

    # Core ----------------------------------------------------------------------------
    def get(self, endpoint: str, path: str, params: dict[str, str]) -> CkwResponse:
        self._call_seq += 1
        seq = self._call_seq
        request = str(httpx.URL(path, params=params))
        wait = self._not_before.get(endpoint, 0.0) - time.monotonic()
        if wait > self.retry.max_rate_wait_s:
            self._record(seq, endpoint, request, http_retry.Try(1, 0.0, "transient"), "deferred",
                         f"rate limit: next call allowed in {wait:.0f} s")
            raise CkwDeferred(f"GET {request} deferred: rate limit resets in {wait:.0f} s")
        if wait > 0:
            self.sleep(wait)

        def payload(response: httpx.Response) -> Any:
            if response.status_code >= 400:
                message = f"HTTP {response.status_code}: {_error_text(response)}"
                raise CkwHttpError(f"GET {request} failed: {message}", response.status_code)
            try:
                return json.loads(response.content)
            except ValueError as exc:  # malformed or truncated: retried like a transport fault
                reason = f"unreadable JSON body ({len(response.content)} bytes): {exc}"
                self.on_bad_body(endpoint, reason, response.content[:2000].decode("utf-8", "replace"))
                raise ValueError(reason) from exc

        def record(attempt: http_retry.Try) -> None:
            if attempt.response is not None:
                self._note_rate_limit(endpoint, attempt.response)
            self._record(seq, endpoint, request, attempt, *_health(attempt))

        try:
            answer = http_retry.call(self._http, "GET", path, self._policy, params=params, read=payload,
                                     on_attempt=record, server_wait=self._rate_wait, sleep=self.sleep, rng=self._rng)
        except http_retry.RetryDeferred as exc:
            raise CkwDeferred(f"GET {request} rate limited; reset in {exc.wait_s:.0f} s") from exc
        except http_retry.RetriesExhausted as exc:
            raise CkwUnavailable(f"GET {self.base_url}{request} failed after {self.retry.max_attempts} attempts; "
                                 f"last error: {_health(exc.last)[1]}") from exc
        return CkwResponse(payload=answer.value, call_seq=seq, request=request)

    @staticmethod
    def _reset_seconds(response: httpx.Response) -> float:
        reset_ms = _int_header(response, "x-ratelimit-reset")
        seconds = (reset_ms or 0) / 1000.0
        return min(max(seconds, RESET_MIN_S), RESET_MAX_S)

    def _rate_wait(self, response: httpx.Response) -> float | None:
        """The API's wait before a retry: until the window resets, on 429 or an exhausted window."""
        if response.status_code == 429 or _int_header(response, "x-ratelimit-remaining") == 0:
            return self._reset_seconds(response)
        return None

    def _note_rate_limit(self, endpoint: str, response: httpx.Response) -> None:
        if _int_header(response, "x-ratelimit-remaining") == 0:
            self._not_before[endpoint] = time.monotonic() + self._reset_seconds(response)

    def _record(self, seq: int, endpoint: str, request: str, attempt: http_retry.Try, outcome: str,
                error: str | None) -> None:
        response = attempt.response
        self.on_attempt(Attempt(
            run_id=self.run_id,
            endpoint=endpoint,
            call_seq=seq,
            attempt=attempt.number,
            request=request,
            checked_at=datetime.now(UTC),
            status_code=attempt.status_code,
            response_time_ms=int(attempt.elapsed_s * 1000),
            success=outcome == "ok",
            error_message=error,
            outcome=outcome,
            ratelimit_limit=_int_header(response, "x-ratelimit-limit") if response is not None else None,
            ratelimit_remaining=_int_header(response, "x-ratelimit-remaining") if response is not None else None,
            ratelimit_reset=_int_header(response, "x-ratelimit-reset") if response is not None else None,
        ))


def _health(attempt: http_retry.Try) -> tuple[str, str | None]:
    """The health-log outcome and error message of a try."""
    response, error = attempt.response, attempt.error
    if response is None:
        return "transport_error", f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if attempt.outcome == "done":
        return "ok", None
    if response.status_code == 429:
        return "rate_limited", f"HTTP 429: {_error_text(response)}"
    if response.status_code >= 400:
        return "http_error", f"HTTP {response.status_code}: {_error_text(response)}"
    return "invalid_payload", str(error)
