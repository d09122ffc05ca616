"""Fault injection shared by every stand-in.

One ASGI middleware (`FaultMiddleware`, driven by a `FaultInjector`) sits in front of a
stand-in's data routes and turns a share of the requests into the failures a client must
survive: 5xx with the API's error body, added latency, bursts of 429 with rate-limit headers,
non-JSON bodies, truncated JSON, hanging responses and schema drift. Control routes under
`/_standin/` are never faulted:

- `GET /_standin/faults` -> the current `FaultConfig` as JSON;
- `PUT /_standin/faults` -> replace it (fields left out take their defaults) and restart the
  fault sequence, so a test sees the same pattern every time it sets the same config;
- `POST /_standin/reset` -> back to the start-up config, counters zeroed, stand-in state reset;
- `GET /_standin/stats` -> requests served per path and per outcome (tests count attempts here).

The start-up config comes from the factory argument, else from the JSON in `$STANDIN_FAULTS`.
Decisions are deterministic: the n-th data request after a (re)set draws from a random
generator seeded with (seed, n), so a run is reproducible whatever the other requests did.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FAULTS_ENV = "STANDIN_FAULTS"
CONTROL_PREFIX = "/_standin"

ERROR_STATUSES = (500, 502, 503)
DRIFT_KINDS = ("rename", "remove", "retype")
# What a misbehaving gateway sends instead of the payload, under a JSON content type.
MALFORMED_BODY = (
    b"<html><head><title>502 Proxy Error</title></head>"
    b"<body><h1>Proxy Error</h1><p>The upstream answered with an invalid payload.</p></body></html>"
)

# Outcomes counted by /_standin/stats. Responses not altered by a fault count as "ok"
# (status < 400) or "http_<status>" (the stand-in's own errors: 400, 404, its own 429, ...).
OK = "ok"
FAULT_5XX = "fault_5xx"
FAULT_429 = "fault_429"
FAULT_MALFORMED = "fault_malformed"
FAULT_TRUNCATED = "fault_truncated"
FAULT_HANG = "fault_hang"
FAULT_SCHEMA_DRIFT = "fault_schema_drift"

# Builds the stand-in's error body for (status, request url).
ErrorBody = Callable[[int, str], Mapping[str, Any]]
Headers = list[tuple[bytes, bytes]]

_RATES = ("error_rate", "malformed_rate", "truncated_rate", "hang_rate", "schema_drift_rate")


@dataclass(frozen=True)
class FaultConfig:
    """Which faults a stand-in injects. All off by default.

    The rates are shares of data requests (0..1, summing to at most 1; one draw per request
    picks at most one of them). The 429 burst is by request count and wins over the rates:
    within every `burst_every` data requests the first `burst_429` are answered 429
    (`burst_every = 0`: only the first `burst_429` requests after a (re)set).
    Latency (`latency_ms` + uniform jitter up to `latency_jitter_ms`) is added to every data
    request before its outcome. A hanging request waits `hang_s` (or until the client goes
    away), then the connection is closed after the status line, without a body.
    """

    error_rate: float = 0.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    burst_429: int = 0
    burst_every: int = 0
    burst_reset_ms: int = 1000
    malformed_rate: float = 0.0
    truncated_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 35.0
    schema_drift_rate: float = 0.0
    schema_drift_kinds: tuple[str, ...] = DRIFT_KINDS
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _RATES:
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")
        if sum(getattr(self, name) for name in _RATES) > 1.0 + 1e-9:
            raise ValueError(f"the rates {', '.join(_RATES)} must sum to at most 1")
        for name in ("latency_ms", "latency_jitter_ms", "burst_429", "burst_every", "burst_reset_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.hang_s <= 0:
            raise ValueError(f"hang_s must be > 0, got {self.hang_s}")
        if self.burst_every and self.burst_429 > self.burst_every:
            raise ValueError("burst_429 must not exceed burst_every")
        unknown = set(self.schema_drift_kinds) - set(DRIFT_KINDS)
        if not self.schema_drift_kinds or unknown:
            raise ValueError(f"schema_drift_kinds must be a non-empty subset of {list(DRIFT_KINDS)}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Build from JSON-like data; unknown keys (ValueError) and wrong types (TypeError) are errors."""
        if not isinstance(data, Mapping):
            raise TypeError("fault config must be a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault setting(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            default = known[name].default
            if isinstance(default, tuple):
                if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                    raise TypeError(f"{name} must be a list of strings")
                values[name] = tuple(value)
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {value!r}")
            elif isinstance(default, int):
                if value != int(value):
                    raise ValueError(f"{name} must be an integer, got {value!r}")
                values[name] = int(value)
            else:
                values[name] = float(value)
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> FaultConfig | None:
        raw = environ.get(FAULTS_ENV, "").strip()
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"${FAULTS_ENV} is not valid JSON: {exc}") from exc
        try:
            return cls.from_mapping(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"${FAULTS_ENV}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema_drift_kinds"] = list(self.schema_drift_kinds)
        return data


@dataclass(frozen=True)
class _Decision:
    fault: str | None
    latency_s: float
    rng: random.Random


class _Stats:
    def __init__(self) -> None:
        self._by_path: dict[str, Counter[str]] = defaultdict(Counter)

    def record(self, path: str, outcome: str) -> None:
        self._by_path[path][outcome] += 1

    def as_dict(self) -> dict[str, Any]:
        by_outcome: Counter[str] = Counter()
        for outcomes in self._by_path.values():
            by_outcome.update(outcomes)
        return {
            "requests": sum(by_outcome.values()),
            "by_outcome": dict(sorted(by_outcome.items())),
            "by_path": {
                path: {"requests": sum(outcomes.values()), "outcomes": dict(sorted(outcomes.items()))}
                for path, outcomes in sorted(self._by_path.items())
            },
        }


def default_error_body(status: int, url: str) -> dict[str, Any]:
    return {"message": f"Error {status}", "description": "fault injected by the stand-in", "url": url}


class FaultInjector:
    """Holds the live fault config, the request sequence and the counters of one stand-in app."""

    def __init__(
        self,
        initial: FaultConfig,
        *,
        data_prefixes: Sequence[str],
        error_body: ErrorBody = default_error_body,
        on_reset: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.initial = initial
        self.config = initial
        self.data_prefixes = tuple(data_prefixes)
        self._error_body = error_body
        self._on_reset = tuple(on_reset)
        self._sequence = 0
        self._stats = _Stats()

    def set_config(self, config: FaultConfig) -> None:
        self.config = config
        self._sequence = 0

    def reset(self) -> None:
        self.set_config(self.initial)
        self._stats = _Stats()
        for hook in self._on_reset:
            hook()

    def stats(self) -> dict[str, Any]:
        return self._stats.as_dict()

    def _decide(self) -> _Decision:
        config, index = self.config, self._sequence
        self._sequence += 1
        rng = random.Random(f"{config.seed}:{index}")
        latency_s = (config.latency_ms + rng.random() * config.latency_jitter_ms) / 1000.0
        if config.burst_429 and (
            index % config.burst_every < config.burst_429 if config.burst_every else index < config.burst_429
        ):
            return _Decision(FAULT_429, latency_s, rng)
        draw, threshold = rng.random(), 0.0
        for rate, fault in zip(
            (
                config.error_rate,
                config.malformed_rate,
                config.truncated_rate,
                config.hang_rate,
                config.schema_drift_rate,
            ),
            (FAULT_5XX, FAULT_MALFORMED, FAULT_TRUNCATED, FAULT_HANG, FAULT_SCHEMA_DRIFT),
        ):
            threshold += rate
            if draw < threshold:
                return _Decision(fault, latency_s, rng)
        return _Decision(None, latency_s, rng)

    async def handle(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if not path.startswith(self.data_prefixes):
            self._stats.record(path, _status_outcome(await _forward(app, scope, receive, send)))
            return
        decision = self._decide()
        if decision.latency_s > 0:
            await asyncio.sleep(decision.latency_s)
        if decision.fault == FAULT_HANG:
            # Counted before hanging, so a client that timed out already sees its attempt counted.
            self._stats.record(path, FAULT_HANG)
            await _hang(receive, send, self.config.hang_s)
            return
        self._stats.record(path, await self._respond(decision, app, scope, receive, send))

    async def _respond(
        self, decision: _Decision, app: ASGIApp, scope: Scope, receive: Receive, send: Send
    ) -> str:
        config, fault = self.config, decision.fault
        if fault is None:
            return _status_outcome(await _forward(app, scope, receive, send))
        if fault == FAULT_429:
            headers = [
                (b"x-ratelimit-limit", str(max(config.burst_every - config.burst_429, 0)).encode()),
                (b"x-ratelimit-remaining", b"0"),
                (b"x-ratelimit-reset", str(config.burst_reset_ms).encode()),
            ]
            await _send_json(send, 429, self._error_body(429, _url(scope)), headers)
            return FAULT_429
        if fault == FAULT_5XX:
            status = decision.rng.choice(ERROR_STATUSES)
            await _send_json(send, status, self._error_body(status, _url(scope)))
            return FAULT_5XX
        if fault == FAULT_MALFORMED:
            await _send(send, 200, [(b"content-type", b"application/json")], MALFORMED_BODY)
            return FAULT_MALFORMED
        # Truncation and drift alter a real, successful JSON answer of the stand-in.
        status, headers, body = await _capture(app, scope, receive)
        altered = _alter(fault, body, decision.rng, config) if status == 200 and _is_json(headers) else None
        await _send(send, status, headers, body if altered is None else altered)
        return _status_outcome(status) if altered is None else fault


class FaultMiddleware:
    """ASGI middleware applying a `FaultInjector` to everything outside `/_standin/`."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_control(scope["path"]):
            await self.app(scope, receive, send)
        else:
            await self.injector.handle(self.app, scope, receive, send)


def install_faults(
    app: FastAPI,
    faults: FaultConfig | None = None,
    *,
    data_prefixes: Sequence[str] = ("/",),
    error_body: ErrorBody = default_error_body,
    on_reset: Sequence[Callable[[], None]] = (),
) -> FaultInjector:
    """Add the fault middleware and the `/_standin/` control routes to a stand-in app.

    `faults` None means: take `$STANDIN_FAULTS` (JSON), else no faults. Only paths starting
    with one of `data_prefixes` are faulted; every other non-control path is still counted.
    `on_reset` hooks clear the stand-in's own state (e.g. rate-limit windows) on POST reset.
    """
    initial = faults if faults is not None else (FaultConfig.from_env() or FaultConfig())
    injector = FaultInjector(initial, data_prefixes=data_prefixes, error_body=error_body, on_reset=on_reset)
    app.add_middleware(FaultMiddleware, injector=injector)

    async def get_faults() -> JSONResponse:
        return JSONResponse(injector.config.to_dict())

    async def put_faults(request: Request) -> JSONResponse:
        try:
            config = FaultConfig.from_mapping(json.loads(await request.body() or b"{}"))
        except (ValueError, TypeError) as exc:  # ValueError includes JSONDecodeError
            return JSONResponse({"detail": str(exc)}, status_code=400)
        injector.set_config(config)
        return JSONResponse(config.to_dict())

    async def reset() -> JSONResponse:
        injector.reset()
        return JSONResponse(injector.config.to_dict())

    async def stats() -> JSONResponse:
        return JSONResponse(injector.stats())

    for path, endpoint, method in (
        ("/faults", get_faults, "GET"),
        ("/faults", put_faults, "PUT"),
        ("/reset", reset, "POST"),
        ("/stats", stats, "GET"),
    ):
        app.add_api_route(CONTROL_PREFIX + path, endpoint, methods=[method], include_in_schema=False)
    return injector


def _is_control(path: str) -> bool:
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def _status_outcome(status: int) -> str:
    return OK if status < 400 else f"http_{status}"


def _url(scope: Scope) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    return scope["path"] + (f"?{query}" if query else "")


def _is_json(headers: Headers) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in headers)


async def _forward(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> int:
    """Pass the request through unchanged; return the response status."""
    status = 500

    async def watch(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    await app(scope, receive, watch)
    return status


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, Headers, bytes]:
    start: Message = {}
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    return start["status"], list(start.get("headers", [])), b"".join(chunks)


async def _send(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, payload: Mapping[str, Any], headers: Headers = ()) -> None:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    await _send(send, status, [(b"content-type", b"application/json"), *headers], body)


async def _hang(receive: Receive, send: Send, hang_s: float) -> None:
    """Answer nothing for hang_s seconds (less if the client gives up), then drop the connection."""

    async def client_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(client_gone(), hang_s)
        return
    except TimeoutError:
        pass
    # Status line and headers promising a body that never comes: the server closes the
    # connection when the app returns with the response incomplete.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")],
        }
    )


def _alter(fault: str, body: bytes, rng: random.Random, config: FaultConfig) -> bytes | None:
    """The faulty variant of a JSON body, or None when this body cannot carry the fault."""
    if fault == FAULT_TRUNCATED:
        return body[: len(body) // 2] if len(body) >= 2 else None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    places = list(_keys(document))
    if not places:
        return None
    obj, key = rng.choice(places)
    kind = rng.choice(config.schema_drift_kinds)
    if kind == "remove":
        del obj[key]
    elif kind == "retype":
        obj[key] = 0 if isinstance(obj[key], str) else "abc"
    else:
        new_key = _renamed(key)
        if new_key == key or new_key in obj:
            new_key = key + "_renamed"
        items = list(obj.items())
        obj.clear()
        obj.update((new_key if k == key else k, v) for k, v in items)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _keys(node: Any) -> Iterator[tuple[dict[str, Any], str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


def _renamed(key: str) -> str:
    """The drift an upstream typically ships: snake_case to camelCase, else a flipped initial."""
    if "_" in key.strip("_"):
        head, *rest = key.split("_")
        return head + "".join(part[:1].upper() + part[1:] for part in rest)
    return key[:1].swapcase() + key[1:]
