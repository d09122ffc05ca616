"""Plain networkx reference implementations of the analytics, for tests and benchmarks.

Written straight from grid-analytics.md, one node at a time, so that the vectorised CSR
implementations in grid_platform.analytics can be checked against them.
"""

from __future__ import annotations

import random
from collections import deque

import networkx as nx
import numpy as np

from grid_platform.analytics import CascadeParams, GridGraph, failure_probability


def to_networkx(graph: GridGraph) -> nx.Graph:
    """Undirected networkx graph keyed by node_id with ``distance_km`` (1.0 default) and criticality."""
    g = nx.Graph()
    g.add_nodes_from(
        (node, {"criticality_score": float(crit)})
        for node, crit in zip(graph.node_id.tolist(), graph.criticality_score)
    )
    edges = graph.edges()
    lengths = edges["distance_km"].fillna(1.0).tolist()
    g.add_edges_from(
        (u, v, {"distance_km": d})
        for u, v, d in zip(edges["from_node_id"].tolist(), edges["to_node_id"].tolist(), lengths)
    )
    return g


def reference_cascade(
    g: nx.Graph, seeds: list[str], betweenness: dict[str, float], params: CascadeParams
) -> list[tuple[str, int, str | None, float]]:
    """§2.2 as written: FIFO queue, neighbours in ascending node_id, max_nodes checked before each failure.

    Returns (node_id, wave, triggered_by, failure_probability) in failure order.
    """
    failed: list[tuple[str, int, str | None, float]] = []
    visited: set[str] = set()
    wave: dict[str, int] = {}
    queue: deque[str] = deque()
    for seed in sorted(set(seeds)):
        failed.append((seed, 0, None, 1.0))
        visited.add(seed)
        wave[seed] = 0
        queue.append(seed)
    while queue:
        s = queue.popleft()
        if wave[s] >= params.max_waves:
            continue
        for t in sorted(g[s]):
            if t in visited:
                continue
            p = failure_probability(
                g[s][t]["distance_km"],
                g.nodes[s]["criticality_score"],
                betweenness.get(t, 0.0),
                params.temperature_c,
                params.load_multiplier,
            )
            if p >= params.failure_threshold:
                if len(failed) >= params.max_nodes:
                    return failed
                visited.add(t)
                wave[t] = wave[s] + 1
                failed.append((t, wave[t], s, p))
                queue.append(t)
    return failed


class FixedSources(random.Random):
    """A random state whose ``sample`` returns given sources: networkx then uses exactly those."""

    def __init__(self, sources: list[str]) -> None:
        super().__init__(0)
        self.sources = list(sources)

    def sample(self, population, k, *, counts=None):
        if k != len(self.sources):
            raise ValueError("sample size differs from the fixed sources")
        return list(self.sources)


def reference_betweenness(g: nx.Graph, sources: list[str] | None, weight: str | None = "distance_km") -> dict:
    """networkx betweenness (normalised) with exactly these sources (None: exact)."""
    if sources is None:
        return nx.betweenness_centrality(g, normalized=True, weight=weight)
    return nx.betweenness_centrality(
        g, k=len(sources), normalized=True, weight=weight, seed=FixedSources(sources)
    )


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """Max |a-b| / max(|b|, tiny scale of the vector): 0 for equal vectors."""
    scale = max(float(np.abs(reference).max()), 1e-300)
    return float(np.max(np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-9 * scale)))
