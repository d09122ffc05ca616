"""The cascade endpoint of the read API over a real published analytics snapshot of oberrhein_mv:
answers for a patient zero of the demo network with a valid token, refuses another DSO (403)
and hostile parameters (4xx), and follows a new publication without restart."""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

import dagster as dg
import jwt
import pytest
from analytics_platform_fixtures import NETWORK, analytics_platform

from grid_platform.analytics import CascadeParams, scenario_params, simulate_storm
from grid_platform.analytics.snapshot import load_snapshot
from grid_platform.api.app import create_app
from grid_platform.api.config import ApiConfig
from grid_platform.assets.analytics import grid_centrality, grid_graph
from grid_platform.assets.topology import grid_topology
from grid_platform.publish import current
from grid_platform.settings import load_settings

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from fastapi.testclient import TestClient

SECRET = "analytics-api-tests-secret-0123456789abcdef"
PATH = f"/api/grid/{NETWORK}/analytics/cascade"


def headers(*networks: str, sub: str = "operator-1") -> dict[str, str]:
    now = int(time.time())
    organization = {a: {"id": f"id-{a}", "type": "dso", "attributes": {"type": ["dso"]}, "groups": []}
                    for a in networks}
    token = jwt.encode({"sub": sub, "iat": now, "exp": now + 3600, "scope": "", "organization": organization},
                       SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory, project_downloads):
    with analytics_platform(tmp_path_factory.mktemp("analytics_api"), project_downloads) as p:
        assert dg.materialize([grid_topology, grid_graph, grid_centrality], partition_key=NETWORK,
                              instance=p.instance, resources={"warehouse": p.warehouse}).success
        yield p


@pytest.fixture(scope="module")
def client(platform):
    settings = dataclasses.replace(load_settings(), data_dir=platform.data_dir,
                                   state_db_url=f"sqlite:///{platform.data_dir / 'state.db'}")
    with TestClient(create_app(settings, config=ApiConfig(jwt_secret=SECRET))) as c:
        yield c


@pytest.fixture(scope="module")
def snapshot(platform):
    return load_snapshot(current(load_settings().published_dir, "analytics", NETWORK))


def riskiest(snapshot) -> str:
    table = snapshot.centrality.sort_values(["cascade_risk_score", "node_id"], ascending=[False, True])
    return str(table["node_id"].iloc[0])


def test_cascade_answers_for_a_patient_zero_of_the_demo_network(client, snapshot):
    patient_zero = riskiest(snapshot)
    response = client.get(PATH, params={"patient_zero_id": patient_zero, "scenario": "winter_storm"},
                          headers=headers(NETWORK))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    expected = simulate_storm(snapshot.graph, [patient_zero], snapshot.betweenness, scenario_params("winter_storm"),
                              scenario_name="winter_storm")
    assert body["patient_zero"] == patient_zero and body["scenario_name"] == "winter_storm"
    assert body["params"] == {"temperature_c": -10.0, "load_multiplier": 1.8, "failure_threshold": 0.25,
                              "max_waves": 10, "max_nodes": 100}
    order = body["cascade_order"]
    assert order[0]["node_id"] == patient_zero and order[0]["wave_depth"] == 0
    assert [(r["node_id"], r["wave_depth"], r["triggered_by"]) for r in order] == list(zip(
        expected.cascade.cascade_order["node_id"], expected.cascade.cascade_order["wave_depth"],
        expected.cascade.cascade_order["triggered_by"].astype(object).where(lambda s: s.notna(), None)))
    assert body["total_affected_nodes"] == len(order) > 1
    assert sum(w["nodes_failed"] for w in body["wave_breakdown"]) == len(order)
    assert body["customers_lost"] == expected.customers_lost
    assert body["line_km_lost"] == pytest.approx(expected.line_km_lost)
    assert body["analytics_version"] == snapshot.publication.version
    assert response.headers["cache-control"] == "no-store"


def test_explicit_parameters_override_the_defaults(client, snapshot):
    patient_zero = riskiest(snapshot)
    response = client.get(PATH, params={"patient_zero_id": patient_zero, "failure_threshold": 0.9,
                                        "max_nodes": 5}, headers=headers(NETWORK))
    assert response.status_code == 200
    expected = simulate_storm(snapshot.graph, [patient_zero], snapshot.betweenness,
                              CascadeParams(failure_threshold=0.9, max_nodes=5), scenario_name="custom")
    assert response.json()["total_affected_nodes"] == expected.cascade.total_affected_nodes <= 5


def test_another_dso_is_refused_and_no_token_is_401(client, snapshot):
    params = {"patient_zero_id": riskiest(snapshot)}
    refused = client.get(PATH, params=params, headers=headers("ewl"))
    assert refused.status_code == 403 and refused.json()["detail"]
    assert client.get(PATH, params=params).status_code == 401


@pytest.mark.parametrize("params, status", [
    ({"patient_zero_id": "bus:999999"}, 404),
    ({"patient_zero_id": "x" * 201}, 422),
    ({"patient_zero_id": None}, 422),  # missing
    ({"max_waves": 10**9}, 422),
    ({"max_waves": -1}, 422),
    ({"max_nodes": 0}, 422),
    ({"max_nodes": 10**7}, 422),
    ({"failure_threshold": 1.5}, 422),
    ({"failure_threshold": 0}, 422),
    ({"failure_threshold": "nan"}, 422),
    ({"load_multiplier": -1}, 422),
    ({"temperature_c": 1e308}, 422),
    ({"scenario": "apocalypse"}, 422),
])
def test_hostile_parameters_get_a_clear_4xx(client, snapshot, params, status):
    query = {"patient_zero_id": riskiest(snapshot), **params}
    response = client.get(PATH, params={k: v for k, v in query.items() if v is not None}, headers=headers(NETWORK))
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_a_network_without_analytics_is_404(client):
    response = client.get("/api/grid/ghost_net/analytics/cascade", params={"patient_zero_id": "bus:1"},
                          headers=headers("ghost_net"))
    assert response.status_code == 404 and "ghost_net" in response.json()["detail"]


def test_a_new_publication_is_served_without_restart(client, platform, snapshot):
    patient_zero = riskiest(snapshot)
    before = client.get(PATH, params={"patient_zero_id": patient_zero}, headers=headers(NETWORK)).json()
    # Sampled betweenness (50 sources) changes the scores: a new version is published, and the API
    # answers from it on the next request.
    assert dg.materialize([grid_centrality], partition_key=NETWORK, instance=platform.instance,
                          resources={"warehouse": platform.warehouse},
                          run_config={"ops": {"analytics__grid_centrality": {
                              "config": {"exact_max_nodes": 10, "sample_size": 50}}}}).success
    latest = current(load_settings().published_dir, "analytics", NETWORK)
    assert latest.version != before["analytics_version"]
    after = client.get(PATH, params={"patient_zero_id": patient_zero}, headers=headers(NETWORK)).json()
    assert after["analytics_version"] == latest.version
    fresh = load_snapshot(latest)
    expected = simulate_storm(fresh.graph, [patient_zero], fresh.betweenness, CascadeParams(), scenario_name="custom")
    assert [r["node_id"] for r in after["cascade_order"]] == expected.cascade.cascade_order["node_id"].tolist()
