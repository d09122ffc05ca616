"""The Digital-Twin stand-in over HTTP: the value-fetcher contract (alerts-and-access.md §8) and
its data, derived from pandapower's real lv_schutterwald network."""

from __future__ import annotations

import ast
import inspect

import httpx
import pytest

from grid_platform.standins import digital_twin
from grid_platform.standins.digital_twin import MAX_LIMIT, create_app, schutterwald
from grid_platform.standins.faults import FaultConfig
from grid_platform.standins.server import running

TABLES = ("buses", "lines", "substations", "transformers", "switches")


@pytest.fixture(scope="module")
def demo():
    """The DT's demo network, loaded once (pandapower takes seconds on a busy machine)."""
    return schutterwald()


@pytest.fixture(scope="module")
def dt_url(demo):
    with running(create_app({"schutterwald": lambda: demo})) as url:
        yield url


def test_lists_and_describes_its_fetchers(dt_url):
    listed = httpx.get(f"{dt_url}/values").json()
    assert {f["id"] for f in listed} == {"topology.networks", *(f"topology.{t}" for t in TABLES)}
    described = httpx.get(f"{dt_url}/values/topology.lines/describe").json()
    assert described["payload_schema"]["required"] == ["network_id"] and described["limit"] == 100
    assert httpx.get(f"{dt_url}/values/topology.nope/describe").status_code == 404


def test_envelope_paging_and_errors(dt_url):
    first = httpx.get(f"{dt_url}/values/topology.lines", params={"network_id": "schutterwald"}).json()
    assert set(first) == {"items", "limit", "offset", "count"}
    assert (first["limit"], first["offset"], first["count"]) == (100, 0, 100)
    pages, offset = [], 0
    while True:
        page = httpx.get(f"{dt_url}/values/topology.lines",
                         params={"network_id": "schutterwald", "limit": 1000, "offset": offset}).json()
        assert page["count"] == len(page["items"]) and page["offset"] == offset
        pages += page["items"]
        offset += page["count"]
        if page["count"] < 1000:
            break
    assert len(pages) == 3000 and len({line["line_id"] for line in pages}) == 3000
    posted = httpx.post(f"{dt_url}/values/topology.lines", params={"limit": 5, "offset": 10},
                        json={"network_id": "schutterwald"}).json()
    assert posted["items"] == pages[10:15]

    missing = httpx.get(f"{dt_url}/values/topology.lines")
    assert missing.status_code == 422 and "'network_id' is a required property" in missing.json()["detail"]
    extra = httpx.post(f"{dt_url}/values/topology.buses", json={"network_id": "schutterwald", "x": 1})
    assert extra.status_code == 422
    assert httpx.get(f"{dt_url}/values/topology.lines", params={"network_id": "atlantis"}).status_code == 404
    assert httpx.get(f"{dt_url}/values/topology.nope", params={"network_id": "schutterwald"}).status_code == 404
    assert httpx.get(f"{dt_url}/values/topology.lines",
                     params={"network_id": "schutterwald", "limit": MAX_LIMIT + 1}).status_code == 422


def test_serves_the_real_schutterwald_topology(dt_url):
    def fetch(table: str) -> list[dict]:
        return httpx.get(f"{dt_url}/values/topology.{table}",
                         params={"network_id": "schutterwald", "limit": MAX_LIMIT}).json()["items"]

    (net,) = httpx.get(f"{dt_url}/values/topology.networks").json()["items"]
    assert net["network_id"] == "schutterwald" and net["crs"] == "EPSG:4326"
    lon0, lat0, lon1, lat1 = net["area_bbox"]
    buses, lines = fetch("buses"), fetch("lines")
    assert len(buses) == 2940 and len(lines) == 3000
    assert all(b["geometry"]["type"] == "Point" for b in buses)
    assert all(lon0 < b["geometry"]["coordinates"][0] < lon1 and lat0 < b["geometry"]["coordinates"][1] < lat1
               for b in buses)
    assert all(line["geometry"]["type"] == "LineString" and line["kind"] == "cable" for line in lines)
    bus_ids = {b["bus_id"] for b in buses}
    assert all(line["from_bus"] in bus_ids and line["to_bus"] in bus_ids for line in lines)
    assert len(fetch("substations")) == len(fetch("transformers")) == 14
    switches = fetch("switches")
    assert len(switches) == 378 and {s["element_type"] for s in switches} == {"line"}
    assert any(not s["closed"] for s in switches)


def test_faults_apply_to_the_data_routes_only(demo):
    with running(create_app({"schutterwald": lambda: demo},
                            faults=FaultConfig(burst_429=2, burst_every=0))) as url:
        assert httpx.get(f"{url}/values").status_code == 429
        assert httpx.get(f"{url}/values").status_code == 429
        assert httpx.get(f"{url}/values").status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/_standin/stats").json()["by_outcome"]["fault_429"] == 2


def test_standin_shares_no_code_with_the_client():
    """A mistake shared by the client's parsing and the stand-in must not hide from the tests."""
    tree = ast.parse(inspect.getsource(digital_twin))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith(("grid_platform.topology", "grid_platform.networks")) for m in imported)
