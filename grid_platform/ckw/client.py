"""HTTP client for the CKW public API with bounded retries and a record of every attempt.

Rules (ckw.md §6, §8): 30 s timeout; up to 4 attempts with exponential back-off (5, 10,
20 s by default) plus jitter on transport errors, timeouts, 5xx and unreadable bodies; no
retry on other 4xx; on 429 or an exhausted window (``x-ratelimit-remaining: 0``) wait for
``x-ratelimit-reset`` (milliseconds, clamped to 1..1000 s) when that fits the caller's wait
budget, otherwise defer the call to a later cycle. Every attempt, failed ones included, is
handed to ``on_attempt`` as it happens, so a crash later in the run never loses the log.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import httpx

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


@dataclass
class RetryPolicy:
    max_attempts: int = 4
    backoff_base_s: float = 5.0
    jitter_ratio: float = 0.25
    max_rate_wait_s: float = 60.0

    def backoff(self, failed_attempts: int, rng: random.Random) -> float:
        base = self.backoff_base_s * 2 ** (failed_attempts - 1)
        return base + rng.uniform(0, base * self.jitter_ratio)


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
            timeout=self.timeout_s,
            transport=self.transport,
            headers={"accept": "application/json", "user-agent": "grid-platform/0.1"},
        )
        self._rng = random.Random(self.seed)
        self._call_seq = 0
        # Earliest monotonic time each endpoint may be called again (rate-limit window).
        self._not_before: dict[str, float] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "CkwClient":
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
        last_error = "no attempt made"
        for attempt in range(1, self.retry.max_attempts + 1):
            wait = self._not_before.get(endpoint, 0.0) - time.monotonic()
            if wait > 0:
                if wait > self.retry.max_rate_wait_s:
                    self._record(seq, attempt, endpoint, request, None, 0, None, "deferred",
                                 f"rate limit: next call allowed in {wait:.0f} s", None)
                    raise CkwDeferred(f"GET {request} deferred: rate limit resets in {wait:.0f} s")
                self.sleep(wait)
            started = time.monotonic()
            try:
                response = self._http.get(path, params=params)
            except httpx.TransportError as exc:
                elapsed = int((time.monotonic() - started) * 1000)
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self._record(seq, attempt, endpoint, request, None, elapsed, None, "transport_error",
                             last_error, None)
                self._backoff(attempt)
                continue
            elapsed = int((time.monotonic() - started) * 1000)
            status = response.status_code
            self._note_rate_limit(endpoint, response)
            if status == 429:
                last_error = f"HTTP 429: {_error_text(response)}"
                self._record(seq, attempt, endpoint, request, status, elapsed, None, "rate_limited",
                             last_error, response)
                reset = self._reset_seconds(response)
                if reset > self.retry.max_rate_wait_s:
                    raise CkwDeferred(f"GET {request} rate limited; reset in {reset:.0f} s")
                self._not_before[endpoint] = time.monotonic() + reset
                continue
            if status >= 500:
                last_error = f"HTTP {status}: {_error_text(response)}"
                self._record(seq, attempt, endpoint, request, status, elapsed, None, "http_error",
                             last_error, response)
                self._backoff(attempt)
                continue
            if status >= 400:
                message = f"HTTP {status}: {_error_text(response)}"
                self._record(seq, attempt, endpoint, request, status, elapsed, None, "http_error",
                             message, response)
                raise CkwHttpError(f"GET {request} failed: {message}", status)
            try:
                payload = json.loads(response.content)
            except ValueError as exc:
                # Malformed or truncated body: a transient fault as far as the retry goes.
                last_error = f"unreadable JSON body ({len(response.content)} bytes): {exc}"
                self.on_bad_body(endpoint, last_error, response.content[:2000].decode("utf-8", "replace"))
                self._record(seq, attempt, endpoint, request, status, elapsed, None, "invalid_payload",
                             last_error, response)
                self._backoff(attempt)
                continue
            self._record(seq, attempt, endpoint, request, status, elapsed, True, "ok", None, response)
            return CkwResponse(payload=payload, call_seq=seq, request=request)
        raise CkwUnavailable(
            f"GET {self.base_url}{request} failed after {self.retry.max_attempts} attempts; last error: {last_error}"
        )

    def _backoff(self, attempt: int) -> None:
        if attempt < self.retry.max_attempts:
            self.sleep(self.retry.backoff(attempt, self._rng))

    @staticmethod
    def _reset_seconds(response: httpx.Response) -> float:
        reset_ms = _int_header(response, "x-ratelimit-reset")
        seconds = (reset_ms or 0) / 1000.0
        return min(max(seconds, RESET_MIN_S), RESET_MAX_S)

    def _note_rate_limit(self, endpoint: str, response: httpx.Response) -> None:
        if _int_header(response, "x-ratelimit-remaining") == 0:
            self._not_before[endpoint] = time.monotonic() + self._reset_seconds(response)

    def _record(self, seq: int, attempt: int, endpoint: str, request: str, status: int | None,
                elapsed_ms: int, success: bool | None, outcome: str, error: str | None,
                response: httpx.Response | None) -> None:
        self.on_attempt(Attempt(
            run_id=self.run_id,
            endpoint=endpoint,
            call_seq=seq,
            attempt=attempt,
            request=request,
            checked_at=datetime.now(timezone.utc),
            status_code=status,
            response_time_ms=elapsed_ms,
            success=bool(success),
            error_message=error,
            outcome=outcome,
            ratelimit_limit=_int_header(response, "x-ratelimit-limit") if response is not None else None,
            ratelimit_remaining=_int_header(response, "x-ratelimit-remaining") if response is not None else None,
            ratelimit_reset=_int_header(response, "x-ratelimit-reset") if response is not None else None,
        ))
