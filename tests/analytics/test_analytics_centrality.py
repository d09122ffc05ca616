"""Centrality (§3.1) against networkx on real networks, sampling, scaling, fallbacks."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from analytics_nx_reference import reference_betweenness, relative_error, to_networkx

from grid_platform.analytics import (
    GridGraph,
    betweenness_sources,
    compute_centrality,
    graph_from_frames,
    sampled_betweenness,
)
from grid_platform.analytics.centrality import CentralityResult, largest_component

TOL = 1e-9


def _lcc_networkx(graph: GridGraph) -> tuple[nx.Graph, list[str]]:
    g = to_networkx(graph)
    ids = graph.node_id[largest_component(graph)].tolist()
    h = g.subgraph(ids).copy()
    for _, _, data in h.edges(data=True):
        data["strength"] = 1.0 / max(data["distance_km"], 0.01)
    return h, ids


def _column(result: CentralityResult, name: str, ids: list[str]) -> np.ndarray:
    return result.table.set_index("node_id").loc[ids, name].to_numpy(dtype=float)


def _values(metric: dict, ids: list[str]) -> np.ndarray:
    return np.array([metric[i] for i in ids], dtype=float)


def test_oberrhein_metrics_match_networkx(
    oberrhein: GridGraph, oberrhein_centrality: CentralityResult
) -> None:
    result = oberrhein_centrality
    h, ids = _lcc_networkx(oberrhein)
    meta = result.metadata
    assert meta["betweenness_mode"] == "exact" and meta["largest_component_nodes"] == len(ids) == 109
    assert meta["nodes_outside_largest_component"] == oberrhein.n_nodes - 109 == 70
    checks = {
        "degree_centrality": nx.degree_centrality(h),
        "betweenness_centrality": nx.betweenness_centrality(h, normalized=True, weight="distance_km"),
        "closeness_centrality": nx.closeness_centrality(h, distance="distance_km"),
        "pagerank": nx.pagerank(h, alpha=0.85, max_iter=100, weight="strength"),
        "clustering_coefficient": nx.clustering(h),
    }
    if meta["eigenvector_converged"]:
        checks["eigenvector_centrality"] = nx.eigenvector_centrality(h, max_iter=500, weight="strength")
    else:
        with pytest.raises(nx.PowerIterationFailedConvergence):
            nx.eigenvector_centrality(h, max_iter=500, weight="strength")
    for name, metric in checks.items():
        assert relative_error(_column(result, name, ids), _values(metric, ids)) <= TOL, name
    for node in ids[::5]:
        lengths = nx.single_source_shortest_path_length(h, node, cutoff=3)
        counts = [sum(1 for d in lengths.values() if d == k) for k in (1, 2, 3)]
        row = result.table.set_index("node_id").loc[node]
        assert [row["n1"], row["n2"], row["n3"]] == counts
        assert row["total_reach"] == sum(counts)
        assert row["reach_expansion_ratio"] == pytest.approx(counts[1] / max(counts[0], 1))


def test_nodes_outside_component_are_null(
    oberrhein: GridGraph, oberrhein_centrality: CentralityResult
) -> None:
    table = oberrhein_centrality.table
    outside = table[~table["in_largest_component"]]
    assert len(outside) == 70
    metric_columns = [
        c
        for c in table.columns
        if c not in ("node_id", "node_type", "in_largest_component", "criticality_score")
    ]
    assert outside[metric_columns].isna().all().all()
    inside = table[table["in_largest_component"]]
    assert inside[metric_columns].notna().all().all()
    assert table["node_id"].tolist() == oberrhein.node_id.tolist()


def test_composite_score_and_bands(oberrhein_centrality: CentralityResult) -> None:
    t = oberrhein_centrality.table.dropna(subset=["cascade_risk_score"])
    expected = (
        0.25 * t["criticality_score"]
        + 0.25 * t["betweenness_centrality"]
        + 0.20 * (100 * t["pagerank"])
        + 0.15 * t["degree_centrality"]
        + 0.15 * t["eigenvector_centrality"]
    )
    np.testing.assert_allclose(t["cascade_risk_score"], expected, rtol=1e-12)
    np.testing.assert_allclose(t["cascade_risk_score_normalized"], expected / expected.max(), rtol=1e-12)
    band = np.select(
        [t["betweenness_centrality"] > 0.5, t["betweenness_centrality"] >= 0.1],
        ["critical bottleneck", "high"],
        "moderate",
    )
    assert t["betweenness_band"].tolist() == band.tolist()
    assert set(band) >= {"high", "moderate"}


def test_sampled_betweenness_on_real_grid_matches_networkx_same_sources(oberrhein: GridGraph) -> None:
    result = compute_centrality(oberrhein, seed=7, sample_size=30, exact_max_nodes=50)
    h, ids = _lcc_networkx(oberrhein)
    sources = betweenness_sources(len(ids), 30, 7)
    assert result.metadata["betweenness_mode"] == "sampled"
    assert (result.metadata["betweenness_seed"], result.metadata["betweenness_sources"]) == (7, 30)
    expected = reference_betweenness(h, [ids[i] for i in sources])
    assert relative_error(_column(result, "betweenness_centrality", ids), _values(expected, ids)) <= TOL
    again = compute_centrality(oberrhein, seed=7, sample_size=30, exact_max_nodes=50)
    pd.testing.assert_frame_equal(result.table, again.table)
    other = compute_centrality(oberrhein, seed=8, sample_size=30, exact_max_nodes=50)
    assert not np.allclose(
        other.table["betweenness_centrality"].fillna(0), result.table["betweenness_centrality"].fillna(0)
    )


@pytest.mark.slow
def test_simbench_k500_betweenness_matches_networkx(
    simbench_graph: GridGraph, simbench_centrality: CentralityResult
) -> None:
    meta = simbench_centrality.metadata
    h, ids = _lcc_networkx(simbench_graph)
    assert len(ids) > 1000 and meta["betweenness_mode"] == "sampled" and meta["betweenness_sources"] == 500
    sources = betweenness_sources(len(ids), 500, meta["betweenness_seed"])
    expected = reference_betweenness(h, [ids[i] for i in sources])
    assert (
        relative_error(_column(simbench_centrality, "betweenness_centrality", ids), _values(expected, ids))
        <= TOL
    )
    closeness_probe = ids[:: len(ids) // 25]
    ours = _column(simbench_centrality, "closeness_centrality", closeness_probe)
    reference = [nx.closeness_centrality(h, u=node, distance="distance_km") for node in closeness_probe]
    assert relative_error(ours, np.array(reference)) <= TOL


def test_uniform_lengths_with_ties_match_networkx(activsg2000: GridGraph) -> None:
    """MATPOWER has no lengths: every path length is 1.0 km, many equal shortest paths (BFS route)."""
    sources = betweenness_sources(activsg2000.n_nodes, 40, 3)
    ours = sampled_betweenness(activsg2000, sources)
    g = to_networkx(activsg2000)
    source_ids = activsg2000.node_id[sources].tolist()
    ids = activsg2000.node_id.tolist()
    for weight in ("distance_km", None):
        expected = _values(reference_betweenness(g, source_ids, weight=weight), ids)
        assert relative_error(ours, expected) <= TOL


def test_scaling_edge_cases_follow_networkx() -> None:
    nodes = pd.DataFrame({"node_id": list("abcde")})
    edges = pd.DataFrame(
        {"from_node_id": list("abcb"), "to_node_id": list("bcde"), "distance_km": [1.0, 2.0, 0.5, 2.5]}
    )
    graph = graph_from_frames(nodes, edges)
    g = to_networkx(graph)
    ids = graph.node_id.tolist()
    for sources in ([0, 4], [1, 2, 3], [0, 1, 2, 3, 4], [2]):
        ours = sampled_betweenness(graph, np.array(sources))
        expected = _values(reference_betweenness(g, [ids[i] for i in sources]), ids)
        np.testing.assert_allclose(
            ours, expected, rtol=1e-12, equal_nan=True
        )  # k=1: NaN on the source, as networkx


def test_eigenvector_falls_back_to_pagerank_when_not_converged() -> None:
    n = 400  # a long feeder: the power iteration on (A + I) converges far too slowly
    ids = [f"n{i:03d}" for i in range(n)]
    graph = graph_from_frames(
        pd.DataFrame({"node_id": ids}),
        pd.DataFrame({"from_node_id": ids[:-1], "to_node_id": ids[1:], "distance_km": 0.2}),
    )
    result = compute_centrality(graph)
    assert (
        result.metadata["eigenvector_is_pagerank_fallback"] and not result.metadata["eigenvector_converged"]
    )
    np.testing.assert_array_equal(result.table["eigenvector_centrality"], result.table["pagerank"])
    h, _ = _lcc_networkx(graph)
    with pytest.raises(nx.PowerIterationFailedConvergence):
        nx.eigenvector_centrality(h, max_iter=500, weight="strength")
