"""One retry loop for the platform's HTTP clients (nudging service, meter data, CKW API).

``call(http, method, url, policy, ...)`` sends a request up to ``policy.max_tries`` times.
A try fails *transiently* when sending raises one of ``policy.transient_errors`` (timeouts,
refused connections, ...), when the status is one of ``policy.transient_statuses``, or when
``read(response)`` raises one of ``policy.transient_errors`` (a truncated or drifted body).
Any other answer is handed to ``read``: what it returns ends the call, what else it raises
ends it too (a permanent error of the caller's, re-raised unchanged).

Between tries the loop sleeps the exponential back-off ``backoff_s · 2^(n-1)``, capped at
``backoff_max_s``, plus a random share of up to ``jitter`` of it (``rng`` seedable). A wait
the server asks for (``Retry-After`` in seconds or as an HTTP date, or the caller's
``server_wait``) replaces the back-off, capped the same way; one longer than ``max_wait_s``
ends the call with ``RetryDeferred`` instead of blocking. Spent tries end with
``RetriesExhausted``. Both carry the last ``Try``.

``on_attempt(Try)`` sees every try as it ends, before the sleep or the raise, so a caller can
keep a durable log of attempts, refresh a token or note rate-limit headers.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Self

import httpx

log = logging.getLogger(__name__)

# Trouble on the server's side: rate limiting and 5xx. Services that answer 408 for a request of
# theirs they reject use this set; the default also retries 408.
OVERLOAD_STATUSES = frozenset({429, *range(500, 600)})
TRANSIENT_STATUSES = OVERLOAD_STATUSES | {408}


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 10.0
    max_tries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    jitter: float = 0.0
    max_wait_s: float = math.inf
    transient_statuses: frozenset[int] = TRANSIENT_STATUSES
    transient_errors: tuple[type[Exception], ...] = (httpx.TransportError,)

    def __post_init__(self) -> None:
        if (self.max_tries < 1 or self.timeout_s <= 0 or self.backoff_s < 0 or self.backoff_max_s < 0
                or self.jitter < 0 or self.max_wait_s < 0):
            raise ValueError(f"invalid retry policy {self}")

    def backoff(self, failed_tries: int, rng: random.Random) -> float:
        delay = min(self.backoff_s * 2 ** (failed_tries - 1), self.backoff_max_s)
        return delay + rng.uniform(0, delay * self.jitter) if self.jitter else delay


class MalformedBody(Exception):
    """An answer whose body the caller cannot read (not JSON, not the expected shape): transient,
    the next answer may be whole."""


@dataclass(frozen=True)
class ServiceRetry:
    """A JSON service client's retry settings in its callers' terms (weather API, Digital Twin):
    ``attempts`` tries, a back-off from ``backoff_s`` doubling up to ``max_backoff_s``. Transport
    errors, 429/5xx and ``MalformedBody`` are transient; any other 4xx is the caller's mistake."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    timeout_s: float = 15.0

    def policy(self) -> RetryPolicy:
        return RetryPolicy(timeout_s=self.timeout_s, max_tries=self.attempts, backoff_s=self.backoff_s,
                           backoff_max_s=self.max_backoff_s, transient_statuses=OVERLOAD_STATUSES,
                           transient_errors=(httpx.TransportError, MalformedBody))


@dataclass(frozen=True)
class Try:
    """One request and how it ended: ``done`` (``read`` returned ``value``), ``transient`` or ``permanent``."""

    number: int
    elapsed_s: float
    outcome: Literal["done", "transient", "permanent"]
    response: httpx.Response | None = None
    error: Exception | None = None
    value: Any = None

    @property
    def status_code(self) -> int | None:
        return None if self.response is None else self.response.status_code

    @property
    def detail(self) -> str | None:
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        if self.response is not None and not self.response.is_success:
            return f"HTTP {self.response.status_code}: {self.response.text[:500]}"
        return None


class RetryError(Exception):
    def __init__(self, message: str, last: Try) -> None:
        super().__init__(message)
        self.last = last


class RetriesExhausted(RetryError):
    """Every allowed try failed transiently."""


class RetryDeferred(RetryError):
    """The server asked for a wait longer than ``policy.max_wait_s``: the call belongs to later."""

    def __init__(self, message: str, last: Try, wait_s: float) -> None:
        super().__init__(message, last)
        self.wait_s = wait_s


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or HTTP date); None without one."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def call(http: httpx.Client, method: str, url: str, policy: RetryPolicy, *,
         read: Callable[[httpx.Response], Any] | None = None,
         params: Mapping[str, str] | None = None, content: bytes | None = None,
         headers: Callable[[], Mapping[str, str]] | None = None,
         on_attempt: Callable[[Try], None] | None = None,
         server_wait: Callable[[httpx.Response], float | None] = retry_after,
         sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> Try:
    """Send until answered for good; return the ``done`` try (``read`` defaults to keeping the response).

    ``headers()`` is called per try (a fresh token, a fresh signature timestamp); an error it
    raises counts like one of sending.
    """
    rng = rng or random.Random()
    for number in range(1, policy.max_tries + 1):
        started = time.monotonic()
        try:
            response = http.request(method, url, params=params, content=content,
                                    headers=None if headers is None else headers(), timeout=policy.timeout_s)
        except policy.transient_errors as exc:
            attempt = Try(number, time.monotonic() - started, "transient", error=exc)
        else:
            attempt = _answered(number, time.monotonic() - started, response, read, policy)
        if on_attempt is not None:
            on_attempt(attempt)
        if attempt.outcome == "done":
            return attempt
        if attempt.outcome == "permanent":
            assert attempt.error is not None
            raise attempt.error
        asked = None if attempt.response is None else server_wait(attempt.response)
        if asked is not None and asked > policy.max_wait_s:
            raise RetryDeferred(f"{method} {url}: the server asks to wait {asked:.0f} s", attempt, asked)
        if number == policy.max_tries:
            break
        wait = policy.backoff(number, rng) if asked is None else min(asked, policy.backoff_max_s)
        log.info("%s %s try %d/%d failed (%s); retrying in %.2f s",
                 method, url, number, policy.max_tries, attempt.detail, wait)
        sleep(wait)
    raise RetriesExhausted(f"{method} {url} failed after {policy.max_tries} tries: {attempt.detail}", attempt)


def _answered(number: int, elapsed_s: float, response: httpx.Response,
              read: Callable[[httpx.Response], Any] | None, policy: RetryPolicy) -> Try:
    if response.status_code in policy.transient_statuses:
        return Try(number, elapsed_s, "transient", response)
    try:
        return Try(number, elapsed_s, "done", response, value=response if read is None else read(response))
    except policy.transient_errors as exc:
        return Try(number, elapsed_s, "transient", response, error=exc)
    except Exception as exc:  # noqa: BLE001 - handed to on_attempt, then re-raised unchanged
        return Try(number, elapsed_s, "permanent", response, error=exc)


class OwnsHttpClient:
    """Closing of a client's ``httpx.Client``: the one it made itself, never one it was given."""

    _http: httpx.Client
    _owns_http: bool

    def _use_http(self, given: httpx.Client | None, **options: Any) -> None:
        self._http = given or httpx.Client(**options)
        self._owns_http = given is None

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
