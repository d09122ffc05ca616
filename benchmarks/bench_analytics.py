"""Grid analytics benchmarks: CSR implementations against plain networkx, one JSON line each.

    .venv/bin/python benchmarks/bench_analytics.py

Graphs (grid-analytics.md §7): ``activsg70k`` (MATPOWER case_ACTIVSg70k, 70,000 nodes /
83,318 edges, no line lengths: every edge is 1.0 km) and ``act70k_x14`` (14 chained copies,
980,000 nodes / 1,166,712 edges).

* ``cascade_*``: §2.2 cascade from one patient zero; baseline = the networkx reference of the
  same algorithm (tests/analytics/analytics_nx_reference.py). Equal failure order, waves and
  triggers are required. ``ours_s`` covers the simulation with totals and wave breakdown;
  ``tables_s`` the string-heavy per-node tables built on first access.
* ``bfs_*``: hop distances from a source; baseline ``networkx.single_source_shortest_path_length``.
* ``centrality_activsg70k``: sampled betweenness with K sources (path length distance_km);
  baseline ``networkx.betweenness_centrality(G, k=K, weight="distance_km")`` fed the same
  sources, equal to 1e-9 relative (same networkx-3.6 scaling). ``baseline_bfs_s`` is networkx's
  unweighted mode (valid here because every length is 1.0), reported for transparency.

Ours is the median of 3 runs; a baseline runs once. The 1 M networkx graph is built once.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "analytics"))

from analytics_nx_reference import reference_betweenness, reference_cascade, relative_error, to_networkx

from grid_platform.analytics import (
    CascadeParams,
    GridGraph,
    betweenness_sources,
    graph_from_matpower,
    hop_distances,
    matpower_case_path,
    sampled_betweenness,
    simulate_cascade,
    tile_graph,
)
from grid_platform.analytics.centrality import BETWEENNESS_SEED

BETWEENNESS_K = 16
COPIES = 14
CASCADE_1M_TARGET_S = 2.0
BFS_SOURCES = 10


def median_time(fn: Callable[[], Any], runs: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def once(fn: Callable[[], Any]) -> tuple[float, Any]:
    return median_time(fn, runs=1)


def emit(name: str, n: int, ours_s: float, baseline_s: float, **extra: Any) -> None:
    line = {"name": name, "n": n, "ours_s": round(ours_s, 6), "baseline_s": round(baseline_s, 6)}
    line["ratio"] = round(baseline_s / ours_s, 2)
    line.update(extra)
    print(json.dumps(line), flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def bench_centrality(graph: GridGraph, g: nx.Graph) -> np.ndarray:
    sources = betweenness_sources(graph.n_nodes, BETWEENNESS_K, BETWEENNESS_SEED)
    source_ids = graph.node_id[sources].tolist()
    ours_s, ours = median_time(lambda: sampled_betweenness(graph, sources))
    baseline_s, reference = once(lambda: reference_betweenness(g, source_ids, weight="distance_km"))
    bfs_s, reference_bfs = once(lambda: reference_betweenness(g, source_ids, weight=None))
    expected = np.array([reference[node] for node in graph.node_id.tolist()])
    expected_bfs = np.array([reference_bfs[node] for node in graph.node_id.tolist()])
    error = max(relative_error(ours, expected), relative_error(ours, expected_bfs))
    check(error <= 1e-9, f"betweenness differs from networkx: max relative error {error:.3e}")
    emit(
        "centrality_activsg70k",
        graph.n_nodes,
        ours_s,
        baseline_s,
        k=BETWEENNESS_K,
        seed=BETWEENNESS_SEED,
        max_relative_error=error,
        baseline_bfs_s=round(bfs_s, 6),
        ratio_vs_bfs=round(bfs_s / ours_s, 2),
    )
    return ours


def bench_cascade(
    name: str, graph: GridGraph, g: nx.Graph, betweenness: np.ndarray, params: CascadeParams, **extra: Any
) -> None:
    patient_zero = str(graph.node_id[graph.n_nodes // 3])
    ours_s, result = median_time(lambda: simulate_cascade(graph, patient_zero, betweenness, params))
    tables_s, _ = once(lambda: (result.cascade_order, result.propagation_paths))
    by_id = dict(zip(graph.node_id.tolist(), betweenness.tolist()))
    baseline_s, reference = once(lambda: reference_cascade(g, [patient_zero], by_id, params))
    order = result.cascade_order
    check(order["node_id"].tolist() == [row[0] for row in reference], f"{name}: failure order differs")
    check(order["wave_depth"].tolist() == [row[1] for row in reference], f"{name}: waves differ")
    triggers = [None if pd.isna(v) else v for v in order["triggered_by"].tolist()]
    check(triggers == [row[2] for row in reference], f"{name}: triggers differ")
    if "target_s" in extra:
        extra["meets_target"] = ours_s < extra["target_s"]
    emit(
        name,
        graph.n_nodes,
        ours_s,
        baseline_s,
        failed_nodes=result.total_affected_nodes,
        waves=result.max_cascade_depth,
        tables_s=round(tables_s, 6),
        params=params.as_dict(),
        **extra,
    )


def bench_bfs(name: str, graph: GridGraph, g: nx.Graph, sources: list[str]) -> None:
    ours_s, ours = median_time(lambda: [hop_distances(graph, s) for s in sources])
    baseline_s, reference = once(lambda: [nx.single_source_shortest_path_length(g, s) for s in sources])
    for hops, expected in zip(ours, reference):
        reached = np.flatnonzero(hops >= 0)
        check(len(reached) == len(expected), f"{name}: reachable sets differ")
        same = all(
            expected[node] == h for node, h in zip(graph.node_id[reached].tolist(), hops[reached].tolist())
        )
        check(same, f"{name}: hop distances differ")
    emit(
        name,
        graph.n_nodes,
        ours_s,
        baseline_s,
        sources=len(sources),
        max_hops=int(max(h.max() for h in ours)),
    )


def main() -> None:
    graph = graph_from_matpower(matpower_case_path("case_ACTIVSg70k"), source="case_ACTIVSg70k")
    check((graph.n_nodes, graph.n_edges) == (70_000, 83_318), "ACTIVSg70k size differs from §7")
    g = to_networkx(graph)
    betweenness = bench_centrality(graph, g)

    spread = CascadeParams(
        temperature_c=-10.0, load_multiplier=1.8, failure_threshold=0.02, max_waves=100_000, max_nodes=10**7
    )
    bench_cascade("cascade_activsg70k", graph, g, betweenness, spread)
    step = graph.n_nodes // BFS_SOURCES
    bench_bfs("bfs_activsg70k", graph, g, graph.node_id[::step][:BFS_SOURCES].tolist())
    del g

    big = tile_graph(graph, COPIES)
    check((big.n_nodes, big.n_edges) == (980_000, 1_166_712), "act70k_x14 size differs from §7")
    big_betweenness = np.tile(betweenness, COPIES)  # copies are identical; the links barely shift paths
    build_s, big_g = once(lambda: to_networkx(big))
    bench_cascade(
        "cascade_1m",
        big,
        big_g,
        big_betweenness,
        spread,
        target_s=CASCADE_1M_TARGET_S,
        networkx_build_s=round(build_s, 3),
    )
    bench_bfs("bfs_1m", big, big_g, [str(big.node_id[0])])


if __name__ == "__main__":
    main()
