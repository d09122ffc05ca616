"""The shared retry loop against a real HTTP server on 127.0.0.1 answering from a script."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from grid_platform.http_retry import RetriesExhausted, RetryDeferred, RetryPolicy, Try, call, retry_after
from grid_platform.standins.server import running

FAST = RetryPolicy(timeout_s=2.0, max_tries=3, backoff_s=0.5, backoff_max_s=8.0)


@dataclass
class Step:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0


@dataclass
class Script:
    """The answers of the next requests, in order (the last one repeats), and what was received."""

    steps: list[Step] = field(default_factory=list)
    received: list[Request] = field(default_factory=list)
    headers_seen: list[dict[str, str]] = field(default_factory=list)

    def play(self, *steps: Step) -> None:
        self.steps, self.received, self.headers_seen = list(steps), [], []


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    async def answer(request: Request) -> Response:
        script.received.append(request)
        script.headers_seen.append(dict(request.headers))
        step = script.steps[min(len(script.received), len(script.steps)) - 1]
        if step.hang_s:
            await asyncio.sleep(step.hang_s)
        return Response(step.body, step.status, headers=step.headers, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])
    with running(app) as url:
        yield url, script


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


class Sleeps(list[float]):
    """Records the waits instead of sleeping them, so back-off values can be checked exactly."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_transient_statuses_are_retried_with_exponential_backoff(server, http):
    url, script = server
    script.play(Step(503), Step(429), Step(200, b'{"n": 3}'))
    sleeps = Sleeps()
    done = call(http, "GET", url + "/x", FAST, read=lambda r: r.json(), sleep=sleeps)
    assert (done.outcome, done.number, done.value, done.status_code) == ("done", 3, {"n": 3}, 200)
    assert len(script.received) == 3 and sleeps == [0.5, 1.0]


def test_a_permanent_status_is_not_retried(server, http):
    url, script = server
    script.play(Step(404, b'{"message": "no such meter"}'), Step(200))
    # Without read, a non-transient answer ends the call and the caller judges it.
    answer = call(http, "GET", url + "/x", FAST, sleep=Sleeps())
    assert (answer.outcome, answer.number, answer.status_code) == ("done", 1, 404)
    assert answer.detail == 'HTTP 404: {"message": "no such meter"}'

    class NotFound(Exception):
        pass

    def read(response: httpx.Response) -> object:
        if response.status_code == 404:
            raise NotFound(response.text)
        return response.json()

    script.play(Step(404), Step(200))
    tries: list[Try] = []
    with pytest.raises(NotFound):  # the caller's own error, unchanged
        call(http, "GET", url + "/x", FAST, read=read, on_attempt=tries.append, sleep=Sleeps())
    assert len(script.received) == 1 and [t.outcome for t in tries] == ["permanent"]


def test_a_transient_error_raised_by_read_is_retried(server, http):
    url, script = server
    script.play(Step(200, b"<html>proxy error"), Step(200, b'{"readings": [1]'), Step(200, b'{"readings": [1]}'))
    policy = RetryPolicy(max_tries=3, backoff_s=0.0, transient_errors=(httpx.TransportError, ValueError))
    tries: list[Try] = []
    done = call(http, "GET", url + "/x", policy, read=lambda r: json.loads(r.content)["readings"],
                on_attempt=tries.append)
    assert done.value == [1]
    assert [(t.outcome, type(t.error).__name__) for t in tries] == [
        ("transient", "JSONDecodeError"), ("transient", "JSONDecodeError"), ("done", "NoneType")]


def test_the_attempt_limit_ends_the_call_without_a_last_sleep(server, http):
    url, script = server
    script.play(Step(502, b'{"message": "bad gateway"}'))
    sleeps = Sleeps()
    with pytest.raises(RetriesExhausted) as err:
        call(http, "POST", url + "/x", FAST, content=b"{}", sleep=sleeps)
    assert len(script.received) == 3 and sleeps == [0.5, 1.0]
    assert err.value.last.number == 3 and err.value.last.status_code == 502
    assert "failed after 3 tries: HTTP 502" in str(err.value) and "bad gateway" in str(err.value)


def test_retry_after_replaces_the_backoff_up_to_the_cap(server, http):
    url, script = server
    script.play(Step(503, headers={"Retry-After": "2"}), Step(429, headers={"Retry-After": "30"}), Step(200))
    sleeps = Sleeps()
    call(http, "GET", url + "/x", FAST, sleep=sleeps)
    assert sleeps == [2.0, 8.0]

    in_10_s = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    script.play(Step(503, headers={"Retry-After": in_10_s}), Step(200))
    sleeps = Sleeps()
    call(http, "GET", url + "/x", RetryPolicy(backoff_s=0.5, backoff_max_s=60), sleep=sleeps)
    assert len(sleeps) == 1 and 8.0 < sleeps[0] <= 10.0


def test_a_wait_beyond_the_budget_defers_the_call(server, http):
    url, script = server
    script.play(Step(429, headers={"Retry-After": "3600"}), Step(200))
    sleeps = Sleeps()
    with pytest.raises(RetryDeferred) as err:
        call(http, "GET", url + "/x", RetryPolicy(max_wait_s=60), sleep=sleeps)
    assert err.value.wait_s == 3600 and err.value.last.status_code == 429
    assert len(script.received) == 1 and sleeps == []


def test_the_callers_server_wait_reads_other_headers(server, http):
    url, script = server
    script.play(Step(429, headers={"x-ratelimit-reset": "2500"}), Step(200))
    sleeps = Sleeps()
    call(http, "GET", url + "/x", FAST, sleep=sleeps,
         server_wait=lambda r: int(r.headers["x-ratelimit-reset"]) / 1000 if r.status_code == 429 else None)
    assert sleeps == [2.5]


def test_timeouts_are_transient_and_bounded(server, http):
    url, script = server
    script.play(Step(hang_s=2.0))
    policy = RetryPolicy(timeout_s=0.2, max_tries=2, backoff_s=0.01)
    started = time.monotonic()
    with pytest.raises(RetriesExhausted) as err:
        call(http, "GET", url + "/x", policy)
    assert isinstance(err.value.last.error, httpx.ReadTimeout) and err.value.last.response is None
    assert len(script.received) == 2 and time.monotonic() - started < 1.5
    assert "ReadTimeout" in err.value.last.detail


def test_refused_connections_are_transient():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tries: list[Try] = []
    with httpx.Client() as http, pytest.raises(RetriesExhausted) as err:
        call(http, "GET", f"http://127.0.0.1:{port}/x", FAST, on_attempt=tries.append, sleep=Sleeps())
    assert isinstance(err.value.last.error, httpx.ConnectError)
    assert [t.number for t in tries] == [1, 2, 3] and all(t.outcome == "transient" for t in tries)


def test_callback_sees_each_try_before_its_sleep_and_headers_are_fresh_per_try(server, http):
    url, script = server
    script.play(Step(500), Step(500), Step(201))
    events: list[tuple[str, object]] = []
    counter = iter(range(1, 10))
    done = call(http, "POST", url + "/x", FAST, content=b"{}",
                headers=lambda: {"x-try": str(next(counter))},
                on_attempt=lambda t: events.append(("try", (t.number, t.outcome, t.status_code))),
                sleep=lambda s: events.append(("sleep", s)))
    assert events == [("try", (1, "transient", 500)), ("sleep", 0.5), ("try", (2, "transient", 500)),
                      ("sleep", 1.0), ("try", (3, "done", 201))]
    assert done.status_code == 201 and [h["x-try"] for h in script.headers_seen] == ["1", "2", "3"]


def test_an_error_raised_by_headers_counts_as_a_try():
    class TokenDown(RuntimeError):
        pass

    def headers() -> dict[str, str]:
        raise TokenDown("token endpoint answered 503")

    policy = RetryPolicy(max_tries=2, backoff_s=0.0, transient_errors=(httpx.TransportError, TokenDown))
    with httpx.Client() as http, pytest.raises(RetriesExhausted) as err:
        call(http, "GET", "http://127.0.0.1:9/x", policy, headers=headers)
    assert err.value.last.detail == "TokenDown: token endpoint answered 503"


def test_backoff_is_capped_and_its_jitter_reproducible():
    policy = RetryPolicy(backoff_s=5.0, backoff_max_s=15.0, jitter=0.25)
    first = [policy.backoff(n, random.Random(7)) for n in (1, 2, 3, 4)]
    assert first == [policy.backoff(n, random.Random(7)) for n in (1, 2, 3, 4)]
    assert [5 <= first[0] <= 6.25, 10 <= first[1] <= 12.5, 15 <= first[2] <= 18.75, 15 <= first[3] <= 18.75] \
        == [True] * 4
    assert RetryPolicy(backoff_s=0.5).backoff(3, random.Random()) == 2.0  # no jitter: exact
    with pytest.raises(ValueError):
        RetryPolicy(max_tries=0)


def test_retry_after_forms():
    def wait(value: str) -> float | None:
        return retry_after(httpx.Response(503, headers={"Retry-After": value}))

    assert wait("7") == 7.0 and wait("-3") == 0.0 and wait("soon") is None
    assert wait("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert retry_after(httpx.Response(503)) is None
