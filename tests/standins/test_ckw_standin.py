"""The CKW stand-in against the published RAML examples, the live samples and the spec (ckw.md).

Every test talks HTTP to a real uvicorn server on 127.0.0.1 (grid_platform.standins.server.running).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from grid_platform.standins.ckw import ERROR_BODIES, create_app
from grid_platform.standins.faults import FaultConfig
from grid_platform.standins.server import running

ZRH = ZoneInfo("Europe/Zurich")
CKW_DATA = Path("/work/shared/data/ckw")
RAML_DIR = CKW_DATA / "e-ckw-public-data-1.0.23-raml"
EXAMPLES = RAML_DIR / "examples"
TRAIT = next(RAML_DIR.glob("exchange_modules/*/error-responses/1.0.0/error-responses.raml"))

PRICES = "/api/v1/netzinformationen/energie/dynamische-preise"
TRA = "/api/v1/netzinformationen/trasignale"
PLANT = "/api/v1/netzinformationen/kraftwerke/lutersarni/live"

# The fixed "now" of the shared server: after the autumn DST day, after the 11:20 publication.
NOW = datetime(2026, 10, 26, 12, 0, tzinfo=ZRH)

SLOT_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}[+-]\d{2}:\d{2}$")
SLOT_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z$")
PUBLICATION_LIVE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}[+-]\d{2}:\d{2}$")
SECOND_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _skeleton(node: Any) -> Any:
    """Field names and JSON types of a document (first element of arrays)."""
    if isinstance(node, dict):
        return {key: _skeleton(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_skeleton(node[0])] if node else []
    if isinstance(node, bool):
        return "boolean"
    if isinstance(node, int | float | Decimal):
        return "number"
    return "string" if isinstance(node, str) else "null"


def _flatten(node: Any, path: tuple = ()) -> dict[tuple, Any]:
    if isinstance(node, dict):
        return {p: v for key, value in node.items() for p, v in _flatten(value, path + (key,)).items()}
    if isinstance(node, list):
        return {p: v for i, value in enumerate(node) for p, v in _flatten(value, path + (i,)).items()}
    return {path: node}


def _local_midnight(day: date) -> str:
    return datetime.combine(day, datetime.min.time(), ZRH).isoformat(timespec="minutes")


def _decimal_json(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


def _value(slot: dict, component: str) -> Decimal:
    return slot[component][0]["value"]


def _trait_examples() -> dict[int, dict[str, str]]:
    trait = yaml.safe_load(TRAIT.read_text(encoding="utf-8"))
    return {
        status: spec["body"]["application/json"]["example"] for status, spec in trait["responses"].items()
    }


# --- fixtures -----------------------------------------------------------------------------------

_clock: dict[str, datetime] = {"now": NOW}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running(create_app(today=lambda: _clock["now"])) as url:
        yield url


@pytest.fixture()
def client(base_url: str) -> Iterator[httpx.Client]:
    _clock["now"] = NOW
    with httpx.Client(base_url=base_url, timeout=10) as http:
        http.post("/_standin/reset").raise_for_status()
        yield http


def _faults(client: httpx.Client, **settings: Any) -> None:
    client.put("/_standin/faults", json=settings).raise_for_status()


def _day(client: httpx.Client, day: date, **params: str) -> httpx.Response:
    return client.get(
        PRICES,
        params={
            "start_timestamp": _local_midnight(day),
            "end_timestamp": _local_midnight(day + timedelta(days=1)),
            **params,
        },
    )


# --- prices ---------------------------------------------------------------------------------------


def test_prices_have_the_fields_and_types_of_the_example_and_live_samples(client: httpx.Client) -> None:
    body = _day(client, date(2026, 9, 28)).json()
    for sample in (EXAMPLES / "example_energyprices.json", *sorted((CKW_DATA / "observed").glob("*.json"))):
        reference = _load(sample)
        assert list(body) == list(reference), sample.name
        assert _skeleton(body["prices"][0]) == _skeleton(reference["prices"][0]), sample.name
        assert list(body["prices"][0]) == list(reference["prices"][0]), sample.name
        for slot in reference["prices"]:  # the regexes below are the examples' own formats
            assert SLOT_LOCAL.match(slot["start_timestamp"]) and SLOT_LOCAL.match(slot["end_timestamp"])
    assert all(
        PUBLICATION_LIVE.match(_load(p)["publication_timestamp"]) for p in (CKW_DATA / "observed").glob("*")
    )
    assert PUBLICATION_LIVE.match(body["publication_timestamp"])
    for slot in body["prices"]:
        assert SLOT_LOCAL.match(slot["start_timestamp"]) and SLOT_LOCAL.match(slot["end_timestamp"])
        for component in ("grid", "electricity", "integrated", "grid_usage"):
            assert slot[component] == [{"unit": "CHF_kWh", "value": slot[component][0]["value"]}]
            assert isinstance(slot[component][0]["value"], float)


def test_prices_invariants_over_31_days(client: httpx.Client) -> None:
    response = client.get(
        PRICES,
        params={"start_timestamp": "2026-08-15T00:00+02:00", "end_timestamp": "2026-09-15T00:00+02:00"},
    )
    assert response.status_code == 200
    prices = _decimal_json(response)["prices"]
    assert len(prices) == 31 * 96 + 1
    per_day: dict[str, list[Decimal]] = defaultdict(list)
    per_hour: dict[str, set[tuple]] = defaultdict(set)
    for slot in prices:
        grid, electricity = _value(slot, "grid"), _value(slot, "electricity")
        assert _value(slot, "integrated") == grid + electricity  # exact, in decimal
        assert Decimal(0) <= _value(slot, "grid_usage") <= grid
        assert electricity == Decimal("0.12")
        start = slot["start_timestamp"]
        per_day[start[:10]].append(_value(slot, "integrated"))
        per_hour[start[:13]].add(tuple(_value(slot, c) for c in ("grid", "grid_usage", "integrated")))
    assert all(len(values) == 1 for values in per_hour.values())  # constant over the four quarters
    full_days = {day: values for day, values in per_day.items() if len(values) == 96}
    assert len(full_days) == 31
    for values in full_days.values():
        assert Decimal("0.15") <= min(values) <= Decimal("0.16")
        assert Decimal("0.25") <= max(values) <= Decimal("0.33")


@pytest.mark.parametrize(
    ("day", "slots"), [(date(2026, 3, 29), 92), (date(2026, 10, 25), 100), (date(2026, 7, 21), 96)]
)
def test_prices_slots_per_local_day_and_the_inclusive_end(
    client: httpx.Client, day: date, slots: int
) -> None:
    prices = _day(client, day).json()["prices"]
    assert len(prices) == slots + 1  # midnight..midnight includes the slot starting at the end
    assert sum(slot["start_timestamp"].startswith(day.isoformat()) for slot in prices) == slots
    assert prices[-1]["start_timestamp"] == _local_midnight(day + timedelta(days=1))
    starts = [datetime.fromisoformat(slot["start_timestamp"]) for slot in prices]
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(starts))


def test_prices_with_utc_bounds_come_back_in_utc(client: httpx.Client) -> None:
    utc = client.get(
        PRICES, params={"start_timestamp": "2026-09-27T22:00Z", "end_timestamp": "2026-09-28T22:00Z"}
    )
    local = _day(client, date(2026, 9, 28))
    utc_prices, local_prices = utc.json()["prices"], local.json()["prices"]
    assert len(utc_prices) == 97
    assert utc_prices[0]["start_timestamp"] == "2026-09-27T22:00Z"
    assert all(
        SLOT_UTC.match(s["start_timestamp"]) and SLOT_UTC.match(s["end_timestamp"]) for s in utc_prices
    )
    for a, b in zip(utc_prices, local_prices):  # same instants, same prices
        assert datetime.fromisoformat(a["start_timestamp"]) == datetime.fromisoformat(b["start_timestamp"])
        assert {k: v for k, v in a.items() if "timestamp" not in k} == {
            k: v for k, v in b.items() if "timestamp" not in k
        }


def test_prices_span_limit_is_31_days(client: httpx.Client) -> None:
    ok = client.get(
        PRICES,
        params={"start_timestamp": "2026-05-01T00:00+02:00", "end_timestamp": "2026-06-01T00:00+02:00"},
    )
    assert ok.status_code == 200 and len(ok.json()["prices"]) == 31 * 96 + 1
    too_long = client.get(
        PRICES,
        params={"start_timestamp": "2026-05-01T00:00+02:00", "end_timestamp": "2026-06-02T00:00+02:00"},
    )
    assert too_long.status_code == 400
    assert too_long.headers["content-type"] == "application/json"
    body = too_long.json()
    assert set(body) == {"message", "description", "url"}
    assert body["message"] == "Error 400 Bad Request" and "31 days" in body["description"]
    assert body["url"].startswith(PRICES)


@pytest.mark.parametrize(
    "params",
    [
        {"tariff_type": "total"},
        {"tariff_name": "home_static"},
        {"start_timestamp": "2026-09-28T00:00"},  # no offset
        {"start_timestamp": "2026-09-28T00:00 02:00"},  # '+' not URL-encoded by the caller
        {"start_timestamp": "yesterday"},
        {"start_timestamp": "2026-09-29T00:00Z", "end_timestamp": "2026-09-28T00:00Z"},
    ],
)
def test_prices_bad_requests(client: httpx.Client, params: dict[str, str]) -> None:
    response = client.get(PRICES, params=params)
    assert response.status_code == 400
    assert response.json()["message"] == "Error 400 Bad Request"


def test_prices_default_window_and_publication_cutoff(client: httpx.Client) -> None:
    window = {"start_timestamp": "2026-10-26T00:00+01:00", "end_timestamp": "2026-10-29T00:00+01:00"}
    _clock["now"] = datetime(2026, 10, 26, 11, 0, tzinfo=ZRH)  # before 11:20: today only
    today = client.get(PRICES).json()
    assert len(today["prices"]) == 96 and {s["start_timestamp"][:10] for s in today["prices"]} == {
        "2026-10-26"
    }
    assert (
        client.get(PRICES, params=window).json()["prices"][-1]["start_timestamp"] == "2026-10-26T23:45+01:00"
    )
    _clock["now"] = datetime(2026, 10, 26, 11, 25, tzinfo=ZRH)  # after 11:20: tomorrow published
    assert len(client.get(PRICES).json()["prices"]) == 96  # the default stays the current day
    body = client.get(PRICES, params=window).json()
    assert body["prices"][-1]["start_timestamp"] == "2026-10-27T23:45+01:00"
    published = datetime.fromisoformat(body["publication_timestamp"])
    assert (
        published.date() == date(2026, 10, 26) and "11:18:30" <= published.strftime("%H:%M:%S") < "11:20:00"
    )
    assert published < _clock["now"]
    beyond = client.get(PRICES, params={"start_timestamp": "2026-11-01T00:00+01:00"})
    assert beyond.status_code == 400  # start after the default end (end of the current day)
    future = client.get(
        PRICES,
        params={"start_timestamp": "2026-11-01T00:00+01:00", "end_timestamp": "2026-11-02T00:00+01:00"},
    )
    assert future.status_code == 200 and future.json()["prices"] == []


def test_prices_tariff_type_and_business_tariff(client: httpx.Client) -> None:
    day = date(2026, 9, 28)
    only_grid = _day(client, day, tariff_type="grid").json()["prices"]
    assert all(list(slot) == ["start_timestamp", "end_timestamp", "grid"] for slot in only_grid)
    assert [s["grid"] for s in only_grid] == [s["grid"] for s in _day(client, day).json()["prices"]]
    home = _decimal_json(_day(client, day))["prices"]
    business = _decimal_json(_day(client, day, tariff_name="business_dynamic"))["prices"]
    assert [_value(s, "grid") for s in home] != [_value(s, "grid") for s in business]
    assert _value(business[0], "electricity") != _value(home[0], "electricity")
    for slot in business:
        assert _value(slot, "integrated") == _value(slot, "grid") + _value(slot, "electricity")
        assert _value(slot, "grid_usage") <= _value(slot, "grid")


# --- TRA signals ----------------------------------------------------------------------------------


def test_tra_signals_up_to_yesterday(client: httpx.Client) -> None:
    example = _load(EXAMPLES / "example_trasignale.json")
    yesterday = client.get(f"{TRA}/2026-10-25")
    assert yesterday.status_code == 200
    signals = yesterday.json()
    assert len(signals) >= 3
    assert all(_skeleton(signal) == _skeleton(example[0]) for signal in signals)
    assert all(list(signal) == list(example[0]) for signal in signals)
    for signal in example + signals:
        assert SECOND_LOCAL.match(signal["Start"]) and SECOND_LOCAL.match(signal["End"])
        assert datetime.fromisoformat(signal["Start"]) < datetime.fromisoformat(signal["End"])
    assert {signal["Date"] for signal in signals} == {"2026-10-25"}
    spans = [(datetime.fromisoformat(s["Start"]), datetime.fromisoformat(s["End"])) for s in signals]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])  # overlaps
    assert len({(s["Name"], s["Date"], s["Start"]) for s in signals}) == len(signals)  # natural key
    for alias in ("last", "latest"):
        assert client.get(f"{TRA}/{alias}").json() == signals
    # D-1 availability: today and later answer 200 with an empty list.
    assert client.get(f"{TRA}/2026-10-26").json() == []
    assert client.get(f"{TRA}/2026-12-31").json() == []
    assert client.get(f"{TRA}/2025-07-08").json() != []


@pytest.mark.parametrize("datum", ["2026-02-30", "26-10-25", "yesterday", "2026-10-25T00:00"])
def test_tra_invalid_date_is_400(client: httpx.Client, datum: str) -> None:
    response = client.get(f"{TRA}/{datum}")
    assert response.status_code == 400
    assert set(response.json()) == {"message", "description", "url"}


# --- Lutersarni -----------------------------------------------------------------------------------


def test_lutersarni_live_like_the_example(client: httpx.Client) -> None:
    example = _load(EXAMPLES / "example_lutersarni_live.json")
    reading = client.get(PLANT).json()
    assert list(reading) == list(example)
    assert _skeleton(reading) == _skeleton(example)  # every value a string
    assert reading["einheiten"] == example["einheiten"]
    assert SLOT_LOCAL.match(example["zeitstempel"]) and SLOT_LOCAL.match(reading["zeitstempel"])
    assert reading["zeitstempel"] == "2026-10-26T12:00+01:00"
    for field in ("spannung", "wirkleistung", "blindleistung", "windgeschwindigkeit"):
        float(reading[field])
    assert 19 < float(reading["spannung"]) < 23 and 0 <= float(reading["wirkleistung"]) <= 2.3

    _clock["now"] = NOW + timedelta(minutes=7)  # same 10-minute interval: same reading
    assert client.get(PLANT).json() == reading
    _clock["now"] = NOW + timedelta(minutes=10)
    assert client.get(PLANT).json()["zeitstempel"] == "2026-10-26T12:10+01:00"


def test_lutersarni_mostly_in_service(client: httpx.Client) -> None:
    statuses = []
    for step in range(60):
        _clock["now"] = NOW + timedelta(minutes=10 * step)
        statuses.append(client.get(PLANT).json()["betriebsstatus"])
    assert statuses.count("in Betrieb") >= 50


# --- health, errors, rate limit -------------------------------------------------------------------


def test_health_and_error_bodies_follow_the_trait(client: httpx.Client) -> None:
    assert client.get("/api/health").json() == {"message": "health-check running"}
    trait = _trait_examples()
    assert {
        status: {"key": key, "message": message, "description": description}
        for status, (key, message, description) in ERROR_BODIES.items()
    } == {
        status: {
            "key": next(k for k in example if k != "description" and k != "url"),
            "message": next(v for k, v in example.items() if k not in ("description", "url")),
            "description": example["description"],
        }
        for status, example in trait.items()
    }
    not_found = client.get("/api/v1/netzinformationen/unbekannt")
    assert not_found.status_code == 404
    assert not_found.json() == {**trait[404], "url": "/api/v1/netzinformationen/unbekannt"}
    not_allowed = client.post(PLANT)
    assert not_allowed.status_code == 405 and not_allowed.json() == {**trait[405], "url": PLANT}


def test_rate_limit_headers_and_429_per_endpoint() -> None:
    with (
        running(create_app(rate_limit=3, rate_window_s=1.0, today=lambda: NOW)) as url,
        httpx.Client(base_url=url, timeout=5) as http,
    ):
        seen = [http.get(PRICES) for _ in range(4)]
        assert [r.status_code for r in seen] == [200, 200, 200, 429]
        assert [r.headers["x-ratelimit-remaining"] for r in seen] == ["2", "1", "0", "0"]
        assert all(r.headers["x-ratelimit-limit"] == "3" for r in seen)
        assert all(0 < int(r.headers["x-ratelimit-reset"]) <= 1000 for r in seen)  # milliseconds
        assert seen[3].json() == {**_trait_examples()[429], "url": PRICES}
        other = http.get(PLANT)  # counted per endpoint
        assert other.status_code == 200 and other.headers["x-ratelimit-remaining"] == "2"
        assert http.get(f"{TRA}/last").headers["x-ratelimit-remaining"] == "2"
        assert "x-ratelimit-limit" not in http.get("/api/health").headers
        time.sleep(int(seen[3].headers["x-ratelimit-reset"]) / 1000 + 0.05)
        again = http.get(PRICES)
        assert again.status_code == 200 and again.headers["x-ratelimit-remaining"] == "2"
        http.get(PRICES), http.get(PRICES)
        assert http.get(PRICES).status_code == 429
        http.post("/_standin/reset")  # clears the windows
        assert http.get(PRICES).status_code == 200
        stats = http.get("/_standin/stats").json()
        assert stats["by_path"][PRICES]["outcomes"] == {"ok": 1}


# --- faults ---------------------------------------------------------------------------------------


def test_fault_5xx_with_error_bodies_and_control_routes_untouched(client: httpx.Client) -> None:
    _faults(client, error_rate=1.0, seed=1)
    trait = _trait_examples()
    responses = [client.get(PRICES) for _ in range(8)]
    assert {r.status_code for r in responses} <= {500, 502, 503} and len(
        {r.status_code for r in responses}
    ) > 1
    for r in responses:
        assert r.json() == {**trait[r.status_code], "url": PRICES}
    assert client.get("/api/health").status_code == 200  # not a data route
    assert client.get("/_standin/faults").json()["error_rate"] == 1.0
    stats = client.get("/_standin/stats").json()
    assert stats["by_path"][PRICES] == {"requests": 8, "outcomes": {"fault_5xx": 8}}
    assert stats["by_path"]["/api/health"]["outcomes"] == {"ok": 1}
    assert not any(path.startswith("/_standin") for path in stats["by_path"])


def test_fault_latency(client: httpx.Client) -> None:
    _faults(client, latency_ms=300, latency_jitter_ms=100)
    started = time.perf_counter()
    assert client.get(PLANT).status_code == 200
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    client.get("/_standin/stats")
    assert time.perf_counter() - started < 0.3


def test_fault_burst_429(client: httpx.Client) -> None:
    _faults(client, burst_429=2, burst_every=4, burst_reset_ms=1500)
    responses = [client.get(f"{TRA}/last") for _ in range(8)]
    assert [r.status_code for r in responses] == [429, 429, 200, 200, 429, 429, 200, 200]
    limited = responses[0]
    assert limited.json()["message"] == "Error 429 Too Many Requests"
    assert (
        limited.headers["x-ratelimit-limit"],
        limited.headers["x-ratelimit-remaining"],
        limited.headers["x-ratelimit-reset"],
    ) == ("2", "0", "1500")
    assert client.get("/_standin/stats").json()["by_outcome"] == {"fault_429": 4, "ok": 4}


def test_fault_malformed_body(client: httpx.Client) -> None:
    _faults(client, malformed_rate=1.0)
    response = client.get(PRICES)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_fault_truncated_body(client: httpx.Client) -> None:
    clean = client.get(PRICES).content
    _faults(client, truncated_rate=1.0)
    response = client.get(PRICES)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert 0 < len(response.content) < len(clean) and clean.startswith(response.content)
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_fault_hang(client: httpx.Client) -> None:
    _faults(client, hang_rate=1.0, hang_s=5)
    started = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        client.get(PLANT, timeout=0.3)
    assert time.perf_counter() - started < 2
    assert client.get("/_standin/stats").json()["by_outcome"] == {"fault_hang": 1}
    _faults(client, hang_rate=1.0, hang_s=0.2)  # outlasting the hang: the connection is dropped
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(PLANT, timeout=5)


@pytest.mark.parametrize("kind", ["rename", "remove", "retype"])
def test_fault_schema_drift(client: httpx.Client, kind: str) -> None:
    clean = _flatten(client.get(f"{TRA}/last").json())
    _faults(client, schema_drift_rate=1.0, schema_drift_kinds=[kind], seed=5)
    response = client.get(f"{TRA}/last")
    assert response.status_code == 200
    drifted = _flatten(response.json())
    assert drifted != clean
    if kind == "remove":
        assert set(drifted) < set(clean) and all(drifted[p] == clean[p] for p in drifted)
    elif kind == "rename":
        (new,) = set(drifted) - set(clean)
        (old,) = set(clean) - set(drifted)
        assert new[:-1] == old[:-1] and new[-1] != old[-1] and new[-1].lower() == old[-1].lower()
        assert drifted[new] == clean[old]
    else:
        changed = [p for p in clean if type(drifted[p]) is not type(clean[p])]
        assert set(drifted) == set(clean) and len(changed) == 1
    assert client.get("/_standin/stats").json()["by_outcome"] == {"fault_schema_drift": 1, "ok": 1}


def test_fault_sequence_is_deterministic_per_seed(client: httpx.Client) -> None:
    def outcomes(seed: int) -> list[int]:
        _faults(client, error_rate=0.3, malformed_rate=0.2, seed=seed)
        return [client.get(f"{TRA}/last").status_code for _ in range(20)]

    first = outcomes(7)
    assert outcomes(7) == first and 200 in first and set(first) - {200}
    assert outcomes(8) != first


def test_fault_config_validation(client: httpx.Client) -> None:
    for bad in (
        {"error_rate": 1.5},
        {"error_rate": 0.6, "hang_rate": 0.6},
        {"unknown": 1},
        {"burst_429": 5, "burst_every": 2},
        {"seed": "x"},
        {"schema_drift_kinds": ["shuffle"]},
    ):
        response = client.put("/_standin/faults", json=bad)
        assert response.status_code == 400, bad
        assert "detail" in response.json()
    assert client.get("/_standin/faults").json() == FaultConfig().to_dict()


def test_faults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_FAULTS", json.dumps({"burst_429": 1, "seed": 3}))
    with running(create_app(today=lambda: NOW)) as url, httpx.Client(base_url=url, timeout=5) as http:
        assert http.get("/_standin/faults").json()["burst_429"] == 1
        assert [http.get(PLANT).status_code for _ in range(3)] == [429, 200, 200]
        http.put("/_standin/faults", json={})
        assert http.get(PLANT).status_code == 200
        http.post("/_standin/reset")  # back to the start-up config and sequence
        assert http.get(PLANT).status_code == 429
    monkeypatch.setenv("STANDIN_FAULTS", "{not json")
    with pytest.raises(ValueError, match="STANDIN_FAULTS"):
        create_app()


# --- determinism, running, entry point ------------------------------------------------------------


def test_two_app_instances_serve_identical_bytes(client: httpx.Client) -> None:
    paths = [
        PRICES,
        f"{PRICES}?start_timestamp=2026-03-28T23:00Z&end_timestamp=2026-04-05T00:00Z",
        f"{TRA}/2026-03-29",
        PLANT,
    ]
    with running(create_app(today=lambda: NOW)) as other_url, httpx.Client(base_url=other_url) as other:
        for path in paths:
            first = client.get(path).content
            assert client.get(path).content == first
            assert other.get(path).content == first


def test_running_stops_the_server() -> None:
    with running(create_app()) as url:
        assert httpx.get(f"{url}/api/health").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/health", timeout=1)


def test_module_entry_point_serves_on_port_env() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "grid_platform.standins.ckw"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert response.json() == {"message": "health-check running"}
    finally:
        process.terminate()
        process.wait(timeout=10)
