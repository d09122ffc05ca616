"""Cascade simulation (§2): spec vectors, sequential rules, networkx reference on real grids, storms."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from analytics_nx_reference import reference_cascade, to_networkx

from grid_platform.analytics import (
    SCENARIOS,
    CascadeParams,
    CascadeResult,
    GridGraph,
    failure_probability,
    graph_from_frames,
    scenario_params,
    simulate_cascade,
    simulate_scenario,
    simulate_storm,
    temp_stress,
)
from grid_platform.analytics.centrality import CentralityResult

SPEC_VECTORS = [
    # d_km, crit(s), btw(t), T, load, temp_stress, p  (grid-analytics.md §2.2)
    (2.0, 0.8, 0.01, -10.0, 1.8, 1.5, 0.796340),
    (2.0, 0.8, 0.001, 25.0, 1.0, 1.0, 0.053626),
    (1.0, 0.9, 0.002, 42.0, 1.5, 1.466667, 0.243163),
    (0.5, 1.0, 0.05, 25.0, 1.0, 1.0, 0.95),
]


@pytest.mark.parametrize(("d", "crit", "btw", "temperature", "load", "stress", "p"), SPEC_VECTORS)
def test_spec_vectors(
    d: float, crit: float, btw: float, temperature: float, load: float, stress: float, p: float
) -> None:
    assert temp_stress(temperature) == pytest.approx(stress, abs=1e-6)
    assert failure_probability(d, crit, btw, temperature, load) == pytest.approx(p, abs=1e-6)


def test_temp_stress_branches() -> None:
    assert temp_stress(0.0) == temp_stress(35.0) == 1.0
    assert temp_stress(-20.0) == 2.0
    assert temp_stress(50.0) == 2.0


def test_scenario_presets_are_the_single_table() -> None:
    assert SCENARIOS == {
        "normal": (25.0, 1.0, 0.30),
        "winter_storm": (-10.0, 1.8, 0.25),
        "heat_wave": (42.0, 1.5, 0.30),
        "storm_hurricane": (28.0, 1.2, 0.20),
    }
    params = scenario_params("winter_storm", max_nodes=7)
    assert (params.temperature_c, params.load_multiplier, params.failure_threshold, params.max_nodes) == (
        -10.0,
        1.8,
        0.25,
        7,
    )
    assert CascadeParams() == CascadeParams(25.0, 1.0, 0.3, 10, 100)  # §2.1 defaults
    with pytest.raises(KeyError, match="unknown scenario"):
        scenario_params("flood")
    with pytest.raises(ValueError, match="max_nodes"):
        CascadeParams(max_nodes=0)


def _chain_graph() -> GridGraph:
    """a–b–c–d plus a–x–c: c is below the threshold from b but above it from x."""
    nodes = pd.DataFrame(
        {
            "node_id": ["a", "b", "c", "d", "x"],
            "node_type": ["SUBSTATION", "POLE", "TRANSFORMER", "METER", "TRANSFORMER"],
            "criticality_score": [1.0, 0.1, 1.0, 1.0, 1.0],
            "capacity_kw": [1000.0, 0.0, 400.0, 2.0, 250.0],
            "downstream_transformers": [3, 0, 1, 0, 1],
        }
    )
    edges = pd.DataFrame(
        {
            "from_node_id": ["a", "b", "c", "a", "x"],
            "to_node_id": ["b", "c", "d", "x", "c"],
            "distance_km": [1.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    return graph_from_frames(nodes, edges)


def test_neighbour_below_threshold_stays_reachable() -> None:
    graph = _chain_graph()
    betweenness = np.array([0.0, 0.0, 0.0, 0.0, 0.0])
    # p(a,b) = p(a,x) = e^-0.2·1·0.1·0.5 = 0.0409; p(b,c) = 0.0041 < 0.01 <= p(x,c) = 0.0409
    result = simulate_cascade(graph, "a", betweenness, CascadeParams(failure_threshold=0.01))
    order = result.cascade_order
    assert order["node_id"].tolist() == ["a", "b", "x", "c", "d"]
    assert order["wave_depth"].tolist() == [0, 1, 1, 2, 3]
    assert order["triggered_by"].tolist()[1:] == ["a", "a", "x", "c"]
    assert pd.isna(order["triggered_by"].iloc[0]) and order["failure_probability"].iloc[0] == 1.0
    assert order["order"].tolist() == [0, 1, 2, 3, 4]
    paths = result.propagation_paths
    assert paths[["from_node", "to_node", "order"]].values.tolist() == [
        ["a", "b", 1], ["a", "x", 2], ["x", "c", 3], ["c", "d", 4]
    ]  # fmt: skip
    assert paths["failure_probability"].iloc[2] == pytest.approx(
        failure_probability(1.0, 1.0, 0.0, 25.0, 1.0)
    )
    waves = result.wave_breakdown
    assert waves["nodes_failed"].tolist() == [1, 2, 1, 1]
    assert waves["customers_affected"].tolist() == [150, 50, 50, 0]
    assert waves["substations"].tolist() == [1, 0, 0, 0] and waves["transformers"].tolist() == [0, 1, 1, 0]
    assert waves["capacity_lost_mw"].tolist() == pytest.approx([1.0, 0.25, 0.4, 0.002])
    assert result.total_affected_nodes == 5 and result.max_cascade_depth == 3
    assert result.estimated_customers_affected == 250 and result.affected_capacity_mw == pytest.approx(1.652)


@pytest.mark.parametrize("max_nodes", [1, 2, 3, 4, 5, 6])
def test_max_nodes_is_checked_before_every_failure(max_nodes: int) -> None:
    graph = _chain_graph()
    params = CascadeParams(failure_threshold=0.01, max_nodes=max_nodes)
    result = simulate_cascade(graph, "a", np.zeros(5), params)
    assert result.total_affected_nodes == min(max_nodes, 5)
    # the wave of b and x is cut after b when only one more failure is allowed
    assert result.cascade_order["node_id"].tolist() == ["a", "b", "x", "c", "d"][:max_nodes]


def test_max_waves_stops_expansion() -> None:
    graph = _chain_graph()
    for max_waves, expected in [(0, 1), (1, 3), (2, 4), (3, 5)]:
        result = simulate_cascade(
            graph, "a", np.zeros(5), CascadeParams(failure_threshold=0.01, max_waves=max_waves)
        )
        assert result.total_affected_nodes == expected


def test_result_is_deterministic_and_keyed(
    oberrhein: GridGraph, oberrhein_centrality: CentralityResult
) -> None:
    btw = oberrhein_centrality.table["betweenness_centrality"].to_numpy()
    params = CascadeParams(failure_threshold=0.05, max_nodes=60, max_waves=50)
    first = simulate_cascade(oberrhein, "5", btw, params, scenario_name="probe")
    second = simulate_cascade(oberrhein, "5", btw, params, scenario_name="probe")
    pd.testing.assert_frame_equal(first.cascade_order, second.cascade_order)
    pd.testing.assert_frame_equal(first.propagation_paths, second.propagation_paths)
    one, two = first.to_dict(), second.to_dict()
    one.pop("simulation_timestamp"), two.pop("simulation_timestamp")  # the only field allowed to differ
    assert one == two
    assert first.key == second.key == ("probe", "5", params.params_hash())
    assert replace(params, max_nodes=61).params_hash() != params.params_hash()
    assert (
        CascadeParams(temperature_c=25, max_nodes=60.0).params_hash()
        == CascadeParams(25.0, max_nodes=60).params_hash()
    )
    assert first.simulation_timestamp.tzinfo is not None
    json.dumps(one)  # JSON-ready


def test_series_betweenness_is_aligned_by_node_id(
    oberrhein: GridGraph, oberrhein_centrality: CentralityResult
) -> None:
    table = oberrhein_centrality.table
    as_array = table["betweenness_centrality"].to_numpy()
    shuffled = table.set_index("node_id")["betweenness_centrality"].sample(frac=1.0, random_state=1)
    params = CascadeParams(failure_threshold=0.05, max_nodes=500, max_waves=50)
    a = simulate_cascade(oberrhein, "5", as_array, params)
    b = simulate_cascade(oberrhein, "5", shuffled, params)
    pd.testing.assert_frame_equal(a.cascade_order, b.cascade_order)
    with pytest.raises(ValueError, match="shape"):
        simulate_cascade(oberrhein, "5", as_array[:-1], params)


def _assert_matches_reference(graph: GridGraph, result: CascadeResult, reference: list) -> None:
    order = result.cascade_order
    assert order["node_id"].tolist() == [row[0] for row in reference]
    assert order["wave_depth"].tolist() == [row[1] for row in reference]
    assert [None if pd.isna(v) else v for v in order["triggered_by"].tolist()] == [
        row[2] for row in reference
    ]
    np.testing.assert_allclose(
        order["failure_probability"].to_numpy(), [row[3] for row in reference], rtol=1e-12
    )
    per_wave = pd.Series([row[1] for row in reference]).value_counts().sort_index()
    assert result.wave_breakdown["nodes_failed"].tolist() == per_wave.tolist()


PARAM_SETS = [
    CascadeParams(failure_threshold=0.02, max_waves=200, max_nodes=100_000),
    CascadeParams(failure_threshold=0.06, max_waves=200, max_nodes=100_000),
    CascadeParams(temperature_c=42.0, load_multiplier=1.5, failure_threshold=0.1, max_waves=6, max_nodes=40),
    scenario_params("winter_storm", max_waves=50, max_nodes=1000),
    scenario_params("normal"),
]


@pytest.mark.parametrize("graph_name", ["oberrhein", pytest.param("simbench_graph", marks=pytest.mark.slow)])
def test_cascade_matches_networkx_reference_wave_by_wave(
    graph_name: str, request: pytest.FixtureRequest
) -> None:
    graph: GridGraph = request.getfixturevalue(graph_name)
    centrality: CentralityResult = request.getfixturevalue(
        "oberrhein_centrality" if graph_name == "oberrhein" else "simbench_centrality"
    )
    btw = centrality.table["betweenness_centrality"].to_numpy()
    btw_by_id = dict(zip(graph.node_id.tolist(), np.nan_to_num(btw).tolist()))
    g = to_networkx(graph)
    patient_zeros = graph.node_id[:: max(1, graph.n_nodes // 8)].tolist()
    spread = 0
    for params in PARAM_SETS:
        for patient_zero in patient_zeros:
            result = simulate_cascade(graph, patient_zero, btw, params)
            _assert_matches_reference(graph, result, reference_cascade(g, [patient_zero], btw_by_id, params))
            spread = max(spread, result.total_affected_nodes)
    assert spread >= 50  # the parameters do make cascades spread


def test_simulate_scenario_uses_preset(oberrhein: GridGraph, oberrhein_centrality: CentralityResult) -> None:
    btw = oberrhein_centrality.table["betweenness_centrality"].to_numpy()
    now = datetime(2025, 1, 6, 7, 30, tzinfo=UTC)
    result = simulate_scenario(oberrhein, "5", btw, "heat_wave", max_nodes=30, now=now)
    assert result.scenario_name == "heat_wave" and result.params == scenario_params("heat_wave", max_nodes=30)
    assert result.simulation_timestamp == now


def test_storm_starts_from_all_seeds(oberrhein: GridGraph, oberrhein_centrality: CentralityResult) -> None:
    btw = oberrhein_centrality.table["betweenness_centrality"].to_numpy()
    seeds = ["5", "39", "150", "5"]
    params = CascadeParams(
        temperature_c=28.0, load_multiplier=1.2, failure_threshold=0.05, max_waves=20, max_nodes=80
    )
    storm = simulate_storm(oberrhein, seeds, btw, params)
    order = storm.cascade.cascade_order
    assert order["node_id"].tolist()[:3] == ["150", "39", "5"]  # deduplicated, ascending node_id
    assert (order["wave_depth"].iloc[:3] == 0).all() and order["triggered_by"].iloc[:3].isna().all()
    g = to_networkx(oberrhein)
    btw_by_id = dict(zip(oberrhein.node_id.tolist(), np.nan_to_num(btw).tolist()))
    _assert_matches_reference(oberrhein, storm.cascade, reference_cascade(g, seeds, btw_by_id, params))
    assert storm.seed_count == 3 and storm.spread_count == storm.cascade.total_affected_nodes - 3
    assert sum(storm.assets_lost.values()) == storm.cascade.total_affected_nodes
    failed = set(order["node_id"])
    edges = oberrhein.edges()
    touched = edges["from_node_id"].isin(failed) | edges["to_node_id"].isin(failed)
    expected_km = edges.loc[touched, "distance_km"].sum()  # unknown (transformer) lengths skipped
    assert storm.line_km_lost == pytest.approx(expected_km)
    assert storm.customers_lost == 50 * int(order["downstream_transformers"].sum())
    assert storm.cascade.patient_zero == "150,39,5"
    json.dumps(storm.to_dict())


def test_storm_keeps_every_seed_beyond_max_nodes(oberrhein: GridGraph) -> None:
    seeds = oberrhein.node_id[:10].tolist()
    storm = simulate_storm(oberrhein, seeds, np.zeros(oberrhein.n_nodes), CascadeParams(max_nodes=3))
    assert storm.cascade.total_affected_nodes == 10 and storm.spread_count == 0
    with pytest.raises(ValueError, match="at least one"):
        simulate_storm(oberrhein, [], np.zeros(oberrhein.n_nodes))
    with pytest.raises(KeyError):
        simulate_storm(oberrhein, ["no-such-bus"], np.zeros(oberrhein.n_nodes))
