"""Outgoing HTTP deliveries: the nudging-tool client and signed webhooks (alerts-and-access.md §5).

Generic: nothing here knows about risk reports; any event type can be sent. Reused by the
flexibility domain for reminders and scheduled events.

Interface
---------
``NudgingClient(base_url, token=None, policy=RetryPolicy())`` (or ``NudgingClient.from_env()``)

* ``ingest_event(body, idempotency_key) -> SendResult``: ``POST {base}/admin/ingest-event``
  with ``body = {event_type, user_id, community_id?, timestamp?, payload?, facts}``.
* ``schedule_event(body, idempotency_key) -> SendResult``: ``POST {base}/admin/scheduled-events``,
  body adds ``external_key`` and ``trigger_at`` (upserted by ``external_key``).
* ``close()`` / context manager.

``WebhookSender(secret, policy=RetryPolicy())``: ``send(url, body, idempotency_key) ->
SendResult`` POSTs the JSON body with ``X-Grid-Timestamp: <unix s>`` and ``X-Grid-Signature:
sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>``; receivers check it with
``verify_signature``.

Every request carries ``Idempotency-Key`` (the caller's, normally
``store.dispatch.idempotency_key(ledger key)``), so a resend after a lost answer is
de-duplicated by the receiver. ``SendResult.outcome``:

* ``sent``: 2xx (200 delivered, 202 delivered-but-suppressed, 204 no rule triggered, 201
  scheduled); ``status_code`` says which.
* ``duplicate``: 409, the receiver de-duplicated it: not a failure.
* ``rejected``: any other 4xx (400 unknown scenario, 422 invalid facts, ...): not retried,
  retrying the same body cannot help.
* ``failed``: timeouts, connection errors, 408, 429 and 5xx on every one of
  ``policy.max_tries`` tries (``grid_platform.http_retry``: exponential back-off
  ``backoff_s · 2^n`` capped at ``backoff_max_s``; a ``Retry-After`` replaces it, up to the cap).

A 401 makes the token provider fetch a new token before the next try.

Authentication (one ``Bearer`` prefix, never two): ``NUDGING_TOKEN_URL`` +
``NUDGING_CLIENT_ID`` + ``NUDGING_CLIENT_SECRET`` -> client-credentials grant with scope
``NUDGING_TOKEN_SCOPE`` (default ``nudging.ingest``), cached until shortly before expiry;
else a static ``NUDGING_TOKEN``; else no ``Authorization`` header (local stand-in).
Retry policy: ``NUDGING_TIMEOUT_S`` (10), ``NUDGING_MAX_TRIES`` (4), ``NUDGING_BACKOFF_S``
(0.5), ``NUDGING_BACKOFF_MAX_S`` (8).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import httpx

from grid_platform import http_retry
from grid_platform.alerts.config import env_number, env_str
from grid_platform.settings import load_settings

INGEST_PATH = "/admin/ingest-event"
SCHEDULED_PATH = "/admin/scheduled-events"
SIGNATURE_HEADER = "X-Grid-Signature"
TIMESTAMP_HEADER = "X-Grid-Timestamp"
USER_AGENT = "grid-platform"

Outcome = Literal["sent", "duplicate", "rejected", "failed"]


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status_code: int | None
    tries: int
    detail: str | None = None

    @property
    def done(self) -> bool:
        """Delivered or already there: the ledger must never send it again."""
        return self.outcome in ("sent", "duplicate")


class TokenError(RuntimeError):
    pass


@dataclass(frozen=True)
class RetryPolicy(http_retry.RetryPolicy):
    """The shared retry policy; a token that cannot be fetched is transient too."""

    transient_errors: tuple[type[Exception], ...] = (httpx.TransportError, TokenError)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetryPolicy:
        env = os.environ if environ is None else environ
        return cls(timeout_s=env_number(env, "NUDGING_TIMEOUT_S", 10.0, minimum=0.001),
                   max_tries=int(env_number(env, "NUDGING_MAX_TRIES", 4, minimum=1, integer=True)),
                   backoff_s=env_number(env, "NUDGING_BACKOFF_S", 0.5, minimum=0.0),
                   backoff_max_s=env_number(env, "NUDGING_BACKOFF_MAX_S", 8.0, minimum=0.0))


class TokenProvider(Protocol):
    def token(self) -> str: ...

    def invalidate(self) -> None: ...


class StaticToken:
    """A fixed bearer token (``NUDGING_TOKEN``); a pasted ``Bearer `` prefix is removed."""

    def __init__(self, token: str) -> None:
        self._token = _bare(token)

    def token(self) -> str:
        return self._token

    def invalidate(self) -> None:
        pass


class ClientCredentials:
    """OAuth2 client-credentials grant against ``token_url``, cached until ``refresh_margin_s`` before expiry."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str = "nudging.ingest",
                 *, timeout_s: float = 10.0, refresh_margin_s: float = 30.0) -> None:
        self.token_url, self.client_id, self.client_secret, self.scope = token_url, client_id, client_secret, scope
        self.timeout_s, self.refresh_margin_s = timeout_s, refresh_margin_s
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self) -> None:
        response = httpx.post(self.token_url, timeout=self.timeout_s, data={
            "grant_type": "client_credentials", "client_id": self.client_id,
            "client_secret": self.client_secret, "scope": self.scope})
        if response.status_code != 200:
            raise TokenError(f"token endpoint answered {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
            token, expires_in = body["access_token"], float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError(f"token endpoint answer without access_token: {exc}") from exc
        self._token = _bare(token)
        self._expires_at = time.monotonic() + max(expires_in - self.refresh_margin_s, 0.0)


def _bare(token: str) -> str:
    token = token.strip()
    return token[7:].strip() if token.lower().startswith("bearer ") else token


def token_provider_from_env(environ: Mapping[str, str] | None = None) -> TokenProvider | None:
    env = os.environ if environ is None else environ
    token_url = env_str(env, "NUDGING_TOKEN_URL", "")
    if token_url:
        client_id, secret = env_str(env, "NUDGING_CLIENT_ID", ""), env_str(env, "NUDGING_CLIENT_SECRET", "")
        if not client_id or not secret:
            raise ValueError("NUDGING_TOKEN_URL is set: NUDGING_CLIENT_ID and NUDGING_CLIENT_SECRET are required")
        return ClientCredentials(token_url, client_id, secret, env_str(env, "NUDGING_TOKEN_SCOPE", "nudging.ingest"))
    static = env_str(env, "NUDGING_TOKEN", "")
    return StaticToken(static) if static else None


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact UTF-8 JSON."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def post_with_retries(http: httpx.Client, url: str, content: bytes, headers: Callable[[], dict[str, str]],
                      policy: RetryPolicy, *, on_unauthorized: Callable[[], None] | None = None) -> SendResult:
    """POST ``content`` until it is answered for good or ``policy.max_tries`` are spent.

    ``headers()`` is called per try (fresh token, fresh signature timestamp). With
    ``on_unauthorized``, a 401 is retried after calling it (a stale token); without, it is final.
    """
    def unauthorized(attempt: http_retry.Try) -> None:
        if attempt.status_code == 401 and on_unauthorized is not None:
            on_unauthorized()

    if on_unauthorized is not None:
        policy = replace(policy, transient_statuses=policy.transient_statuses | {401})
    try:
        answer = http_retry.call(http, "POST", url, policy, content=content, headers=headers,
                                 on_attempt=unauthorized)
    except http_retry.RetriesExhausted as exc:
        return SendResult("failed", exc.last.status_code, policy.max_tries, exc.last.detail)
    status = answer.response.status_code
    if answer.response.is_success:
        return SendResult("sent", status, answer.number)
    if status == 409:
        return SendResult("duplicate", status, answer.number, answer.response.text[:500])
    return SendResult("rejected", status, answer.number, answer.detail)


class NudgingClient(http_retry.OwnsHttpClient):
    def __init__(self, base_url: str, token: TokenProvider | None = None, policy: RetryPolicy | None = None,
                 *, http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_provider = token
        self.policy = policy or RetryPolicy()
        self._use_http(http, headers={"User-Agent": USER_AGENT})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NudgingClient:
        return cls(load_settings().nudging_api_url, token_provider_from_env(environ), RetryPolicy.from_env(environ))

    def ingest_event(self, body: Mapping[str, Any], idempotency_key: str) -> SendResult:
        return self.post(INGEST_PATH, body, idempotency_key)

    def schedule_event(self, body: Mapping[str, Any], idempotency_key: str) -> SendResult:
        return self.post(SCHEDULED_PATH, body, idempotency_key)

    def post(self, path: str, body: Mapping[str, Any], idempotency_key: str) -> SendResult:
        def headers() -> dict[str, str]:
            h = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
            if self.token_provider is not None:
                h["Authorization"] = f"Bearer {self.token_provider.token()}"
            return h

        invalidate = self.token_provider.invalidate if self.token_provider is not None else None
        return post_with_retries(self._http, self.base_url + path, encode_body(body), headers, self.policy,
                                 on_unauthorized=invalidate)


def signature(secret: str, timestamp: str, content: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + content, hashlib.sha256).hexdigest()


def verify_signature(secret: str, content: bytes, timestamp: str | None, signature_header: str | None,
                     *, tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """What a webhook receiver checks: a valid HMAC over ``timestamp.body`` and a fresh timestamp."""
    if not timestamp or not signature_header:
        return False
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(signature(secret, timestamp, content), signature_header)


class WebhookSender(http_retry.OwnsHttpClient):
    """POST JSON to a subscriber's URL, signed with HMAC-SHA256 (``GRID_WEBHOOK_SECRET``)."""

    def __init__(self, secret: str, policy: RetryPolicy | None = None, *, http: httpx.Client | None = None) -> None:
        if not secret:
            raise ValueError("a webhook secret is required (GRID_WEBHOOK_SECRET)")
        self._secret = secret
        self.policy = policy or RetryPolicy()
        self._use_http(http, headers={"User-Agent": USER_AGENT}, follow_redirects=False)

    def send(self, url: str, body: Mapping[str, Any], idempotency_key: str) -> SendResult:
        content = encode_body(body)

        def headers() -> dict[str, str]:
            timestamp = str(int(time.time()))
            return {"Content-Type": "application/json", "Idempotency-Key": idempotency_key,
                    TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(self._secret, timestamp, content)}

        return post_with_retries(self._http, url, content, headers, self.policy)
