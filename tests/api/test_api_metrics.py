"""``/metrics`` (Prometheus text format, parsed here by hand) and the JSON access log."""

from __future__ import annotations

import json
import logging
import math
import re

from grid_api_fixtures import D0, NETWORKS, make_settings

from grid_platform.publish import current

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_exposition(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """Families (name -> type) and samples of the text format 0.0.4; raises on any malformed line."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert re.match(rf"^# HELP {_NAME} .+$", line), line
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped") and name not in types, line
            types[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m, f"malformed sample line {line!r}"
            name, raw_labels, value = m.groups()
            labels: dict[str, str] = {}
            rest = raw_labels or ""
            while rest:
                lm = _LABEL.match(rest)
                assert lm, f"malformed labels in {line!r}"
                labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), lm.group(2))
                rest = rest[lm.end():]
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            assert family in types, f"sample {name} before its # TYPE"
            samples.append((name, labels, float(value)))
    return types, samples


def scrape(client, headers) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse_exposition(response.text)


def value(samples, name: str, **labels: str) -> float:
    found = [v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())]
    return sum(found)


RISKS = "/api/grid/{network_id}/risks"


def test_metrics_needs_a_grid_admin_service(client, token, service_token):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=token()).status_code == 403
    assert client.get("/metrics", headers=service_token("grid.read")).status_code == 403
    assert client.get("/metrics", headers=service_token("grid.admin")).status_code == 200
    assert "/metrics" not in client.get("/api/openapi.json").json()["paths"]


def test_request_counts_and_histograms(client, token, service_token):
    admin = service_token("grid.admin")
    types, before = scrape(client, admin)
    assert types["grid_api_requests_total"] == "counter"
    assert types["grid_api_request_duration_seconds"] == "histogram"
    for _ in range(3):
        assert client.get(f"/api/grid/ckw/risks?dates={D0}", headers=token()).status_code == 200
    assert client.get("/api/grid/other/risks", params={"dates": str(D0)}, headers=token()).status_code == 403
    assert client.get("/no/such/path").status_code == 401
    _, after = scrape(client, admin)

    ok = {"route": RISKS, "method": "GET", "status": "200"}
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)
    assert delta("grid_api_requests_total", **ok) == 3
    assert delta("grid_api_requests_total", route=RISKS, status="403") == 1
    assert delta("grid_api_requests_total", route="unmatched", status="401") == 1
    assert delta("grid_api_request_duration_seconds_count", **ok) == 3
    assert delta("grid_api_request_duration_seconds_sum", **ok) > 0
    # No raw path ever becomes a label value.
    assert not any("other" in lab.get("route", "") or "ckw" in lab.get("route", "") for _, lab, _ in after)

    buckets = [(lab["le"], v) for n, lab, v in after if n == "grid_api_request_duration_seconds_bucket"
               and all(lab.get(k) == x for k, x in ok.items())]
    bounds = [math.inf if le == "+Inf" else float(le) for le, _ in buckets]
    counts = [v for _, v in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == math.inf
    assert counts == sorted(counts) and counts[-1] == value(after, "grid_api_request_duration_seconds_count", **ok)


def test_publication_version_and_data_age(client, published_dir, service_token):
    _, samples = scrape(client, service_token("grid.admin"))
    root = make_settings(published_dir).published_dir
    for dataset in ("risk", "topology"):
        for network in NETWORKS:
            info = [lab for n, lab, v in samples if n == "grid_api_publication_info"
                    and lab["dataset"] == dataset and lab["network"] == network and v == 1]
            assert [lab["version"] for lab in info] == [current(root, dataset, network).version]
            age = value(samples, "grid_api_data_age_seconds", dataset=dataset, network=network)
            assert 0 <= age < 3600
            created = value(samples, "grid_api_publication_created_timestamp_seconds", dataset=dataset,
                            network=network)
            assert created > 1.7e9


def test_access_log_lines_and_request_ids(client, token, caplog):
    with caplog.at_level(logging.INFO, logger="grid_platform.api.access"):
        given = client.get(f"/api/grid/ckw/risks?dates={D0}", headers={**token(), "X-Request-ID": "trace-42.a"})
        forged = client.get("/health", headers={"X-Request-ID": "bad id"})
        missing = client.get("/nowhere")
    assert given.headers["x-request-id"] == "trace-42.a"
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", missing.headers["x-request-id"])
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "grid_platform.api.access"]
    by_id = {line["request_id"]: line for line in lines}
    risks = by_id["trace-42.a"]
    assert risks["route"] == RISKS and risks["status"] == 200 and risks["network_id"] == "ckw"
    assert risks["method"] == "GET" and risks["duration_ms"] >= 0 and risks["subject"] == "user-1"
    assert by_id[forged.headers["x-request-id"]]["route"] == "/health"
    assert by_id[missing.headers["x-request-id"]]["status"] == 401
    assert by_id[missing.headers["x-request-id"]]["route"] == "unmatched"
