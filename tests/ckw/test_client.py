"""Retry, back-off and rate-limit rules of the CKW client, driven by scripted responses."""

import httpx
import pytest

from grid_platform.ckw.client import (
    PLANT_LIVE,
    CkwClient,
    CkwDeferred,
    CkwHttpError,
    CkwUnavailable,
    RetryPolicy,
)

OK_BODY = {"zeitstempel": "2025-12-03T14:40+01:00", "betriebsstatus": "in Betrieb"}


def scripted(*steps):
    """A transport answering each request with the next step (a Response or an exception)."""
    calls = []

    def handler(request: httpx.Request):
        calls.append(request)
        step = steps[min(len(calls), len(steps)) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    return httpx.MockTransport(handler), calls


def client(transport, **retry):
    attempts, sleeps, bad = [], [], []
    c = CkwClient("http://ckw.test/api", run_id="run-1", on_attempt=attempts.append,
                  on_bad_body=lambda *a: bad.append(a), transport=transport, sleep=sleeps.append, seed=7,
                  retry=RetryPolicy(**retry))
    return c, attempts, sleeps, bad


def test_retries_5xx_and_transport_errors_with_exponential_backoff_and_jitter():
    transport, calls = scripted(httpx.Response(503, json={"message": "down"}),
                                httpx.ConnectError("refused"),
                                httpx.ReadTimeout("slow"),
                                httpx.Response(200, json=OK_BODY))
    c, attempts, sleeps, _ = client(transport)
    assert c.plant_live().payload == OK_BODY
    assert len(calls) == 4
    assert [a.outcome for a in attempts] == ["http_error", "transport_error", "transport_error", "ok"]
    assert [a.attempt for a in attempts] == [1, 2, 3, 4]
    assert len({a.call_seq for a in attempts}) == 1
    assert [5 <= sleeps[0] <= 6.25, 10 <= sleeps[1] <= 12.5, 20 <= sleeps[2] <= 25] == [True] * 3
    assert attempts[0].status_code == 503 and attempts[1].status_code is None
    assert attempts[-1].success and not any(a.success for a in attempts[:-1])


def test_exhausted_attempts_raise_a_clear_error_and_every_attempt_is_logged():
    transport, calls = scripted(httpx.Response(502, json={"messege": "Bad gateway", "description": "upstream"}))
    c, attempts, sleeps, _ = client(transport)
    with pytest.raises(CkwUnavailable) as err:
        c.plant_live()
    assert "failed after 4 attempts" in str(err.value) and "HTTP 502: Bad gateway - upstream" in str(err.value)
    assert len(calls) == 4 and len(attempts) == 4 and len(sleeps) == 3  # no sleep after the last attempt
    assert all(a.error_message for a in attempts)


def test_no_retry_on_other_4xx():
    transport, calls = scripted(httpx.Response(400, json={"message": "Bad Request", "description": "Resquets"}))
    c, attempts, _, _ = client(transport)
    with pytest.raises(CkwHttpError) as err:
        c.prices("2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", "home_dynamic")
    assert err.value.status_code == 400 and len(calls) == 1
    assert attempts[0].request.startswith("/v1/netzinformationen/energie/dynamische-preise?")


def test_429_waits_for_the_reset_in_milliseconds_then_retries():
    limited = httpx.Response(429, json={"message": "Error 429 Too Many Requests"},
                             headers={"x-ratelimit-limit": "4", "x-ratelimit-remaining": "0",
                                      "x-ratelimit-reset": "2500"})
    transport, calls = scripted(limited, httpx.Response(200, json=OK_BODY))
    c, attempts, sleeps, _ = client(transport)
    c.plant_live()
    assert sleeps and 2.0 <= sleeps[0] <= 2.5
    assert attempts[0].outcome == "rate_limited"
    assert (attempts[0].ratelimit_limit, attempts[0].ratelimit_remaining, attempts[0].ratelimit_reset) == (4, 0, 2500)


def test_reset_is_clamped_to_at_least_one_second():
    limited = httpx.Response(429, headers={"x-ratelimit-reset": "5"})
    transport, _ = scripted(limited, httpx.Response(200, json=OK_BODY))
    c, _, sleeps, _ = client(transport)
    c.plant_live()
    assert 0.9 <= sleeps[0] <= 1.0


def test_a_reset_beyond_the_wait_budget_defers_the_call_to_a_later_cycle():
    limited = httpx.Response(429, headers={"x-ratelimit-reset": "999000"})
    transport, calls = scripted(limited)
    c, attempts, sleeps, _ = client(transport, max_rate_wait_s=60)
    with pytest.raises(CkwDeferred):
        c.plant_live()
    assert len(calls) == 1 and sleeps == []


def test_exhausted_window_blocks_the_next_call_of_the_same_endpoint():
    last = httpx.Response(200, json=OK_BODY, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "999000"})
    transport, calls = scripted(last)
    c, attempts, _, _ = client(transport, max_rate_wait_s=60)
    c.plant_live()
    with pytest.raises(CkwDeferred):
        c.plant_live()
    assert len(calls) == 1
    assert attempts[-1].outcome == "deferred" and attempts[-1].status_code is None


def test_malformed_and_truncated_bodies_are_retried_and_kept_as_rejects():
    transport, calls = scripted(httpx.Response(200, content=b"<html>oops"),
                                httpx.Response(200, content=b'{"zeitstempel": "2025-12'),
                                httpx.Response(200, json=OK_BODY))
    c, attempts, _, bad = client(transport)
    assert c.get(PLANT_LIVE, PLANT_LIVE, {}).payload == OK_BODY
    assert [a.outcome for a in attempts] == ["invalid_payload", "invalid_payload", "ok"]
    assert len(bad) == 2 and bad[1][2].startswith('{"zeitstempel"')


def test_calls_are_numbered_within_a_run():
    transport, _ = scripted(httpx.Response(200, json=OK_BODY))
    c, attempts, _, _ = client(transport)
    c.plant_live()
    c.plant_live()
    assert [a.call_seq for a in attempts] == [1, 2]
