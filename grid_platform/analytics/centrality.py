"""Centrality metrics and composite cascade risk on the base graph (grid-analytics.md §3.1).

Scope: the undirected graph's largest connected component (ties: the one holding the lowest
node_id). Nodes outside it get null metrics and are counted in the metadata.

Betweenness (Brandes, path length = ``distance_km``):
* sources: all nodes when n <= 1,000, else k = min(500, n) sources drawn with
  ``numpy.random.default_rng(seed).choice(n, k, replace=False)`` over the node order; the seed
  and k are recorded in the metadata;
* shortest paths: one scipy ``dijkstra`` call per chunk of sources; when every edge has the
  same length, BFS hop levels give the same shortest-path DAG at lower cost;
* path counts and dependencies: the "tight" entries (dist[v] + len == dist[w], the exact float
  test networkx makes) form the shortest-path DAG. It is processed layer by layer (Kahn's
  order, vectorised over all sources of a chunk): sigma forwards, delta backwards, as in
  Brandes' accumulation;
* scaling (networkx 3.6, normalized, endpoints excluded, undirected): exact runs divide the
  ordered-pair sums by (n-1)(n-2); sampled runs divide a source node's sum by (k-1)(n-2) and a
  non-source node's by k(n-2). ``networkx.betweenness_centrality(G, k, weight=...)`` with the
  same sources returns the same numbers.

Path-type metrics floor lengths at 1 m (:data:`MIN_PATH_KM`): Brandes needs positive lengths.
Strength-type metrics (PageRank, eigenvector) weight edges by 1 / max(distance_km, 0.01).
PageRank and eigenvector centrality repeat networkx's power iterations (tolerance 1e-6 × n).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra

from grid_platform.analytics.graph import GridGraph
from grid_platform.analytics.traversal import bfs_levels, csr_entries

MIN_PATH_KM = 1e-3
MIN_STRENGTH_KM = 0.01
BETWEENNESS_SEED = 20_240_917
BETWEENNESS_SAMPLE = 500
EXACT_BETWEENNESS_MAX_NODES = 1_000
PAGERANK_ALPHA = 0.85
PAGERANK_MAX_ITER = 100
EIGENVECTOR_MAX_ITER = 500
POWER_TOL = 1e-6
CHUNK_ENTRIES = 4_000_000  # sources per Brandes chunk × CSR entries
UNREACHED_LEVEL = np.iinfo(np.int32).max // 2  # level + 1 never equals a real level


@dataclass(frozen=True)
class CentralityResult:
    table: pd.DataFrame
    metadata: dict[str, Any]


def largest_component(graph: GridGraph) -> np.ndarray:
    """Sorted node indices of the largest connected component (ties: the lowest node_id's)."""
    _, labels = connected_components(graph.adjacency, directed=False)
    return np.flatnonzero(labels == np.argmax(np.bincount(labels)))


def _induced(graph: GridGraph, keep: np.ndarray) -> tuple[sp.csr_array, np.ndarray]:
    """Adjacency of the induced subgraph and the per-entry lengths (1.0 default applied)."""
    sub = graph.adjacency[keep][:, keep].tocsr()
    sub.sort_indices()
    return sub, sub.data.copy()


def betweenness_sources(n: int, k: int, seed: int = BETWEENNESS_SEED) -> np.ndarray:
    """k distinct source indices out of n, reproducible from the seed (sorted)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _shortest_distances(
    adjacency: sp.csr_array, path_length: np.ndarray, sources: np.ndarray, uniform: bool
) -> tuple[np.ndarray, np.ndarray | int]:
    """(sources × n) distances and the per-entry step used for the tight-edge test.

    With uniform lengths, distances are int32 BFS hop levels (:data:`UNREACHED_LEVEL` when
    unreachable) and the step is 1: the same shortest-path DAG without Dijkstra.
    """
    n = adjacency.shape[0]
    if uniform:
        levels = np.full((len(sources), n), UNREACHED_LEVEL, dtype=np.int32)
        for row, source in enumerate(sources):
            order, level = bfs_levels(adjacency, int(source))
            levels[row, order] = level
        return levels, 1
    weighted = sp.csr_array((path_length, adjacency.indices, adjacency.indptr), shape=adjacency.shape)
    return dijkstra(weighted, directed=True, indices=sources), path_length


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: cheaper than numpy's hash unique on small arrays)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _dependency_sums(
    dist: np.ndarray, step: np.ndarray | int, rows: np.ndarray, cols: np.ndarray, sources: np.ndarray
) -> np.ndarray:
    """Σ over the chunk's sources of Brandes' dependency delta_s(v), with delta_s(s) = 0."""
    chunk, n = dist.shape
    tail_dist = dist[:, rows]
    tight = tail_dist + step == dist[:, cols]
    if dist.dtype.kind == "f":
        tight &= tail_dist < np.inf  # inf + len == inf between two unreachable nodes
    block, entry = np.nonzero(tight)  # row-major: sorted by (source, tail)
    tails = block * n + rows[entry]
    heads = block * n + cols[entry]
    size = chunk * n
    tight_ptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(tails, minlength=size), out=tight_ptr[1:])
    indegree = np.bincount(heads, minlength=size)
    roots = np.arange(chunk) * n + sources
    sigma = np.zeros(size)
    sigma[roots] = 1.0
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    frontier = roots
    while frontier.size:
        entries, counts = csr_entries(tight_ptr, frontier)
        layer_heads = heads[entries]
        layer_tails = np.repeat(frontier, counts)
        np.add.at(sigma, layer_heads, sigma[layer_tails])
        np.subtract.at(indegree, layer_heads, 1)
        layers.append((layer_tails, layer_heads))
        frontier = _distinct(layer_heads[indegree[layer_heads] == 0])
    delta = np.zeros(size)
    for layer_tails, layer_heads in reversed(layers):
        np.add.at(delta, layer_tails, sigma[layer_tails] * ((1.0 + delta[layer_heads]) / sigma[layer_heads]))
    delta[roots] = 0.0
    return delta.reshape(chunk, n).sum(axis=0)


def brandes_dependencies(adjacency: sp.csr_array, path_length: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Unscaled betweenness: Σ_s Σ_t sigma_st(v)/sigma_st over ordered pairs from ``sources``."""
    n = adjacency.shape[0]
    rows = np.repeat(np.arange(n), np.diff(adjacency.indptr))
    cols = adjacency.indices.astype(np.int64)
    uniform = bool(len(path_length)) and bool((path_length == path_length[0]).all())
    per_chunk = max(1, CHUNK_ENTRIES // max(len(cols) + n, 1))
    total = np.zeros(n)
    for start in range(0, len(sources), per_chunk):
        batch = np.asarray(sources[start : start + per_chunk], dtype=np.int64)
        dist, step = _shortest_distances(adjacency, path_length, batch, uniform)
        total += _dependency_sums(dist, step, rows, cols, batch)
    return total


def scale_betweenness(raw: np.ndarray, sources: np.ndarray | None) -> np.ndarray:
    """networkx 3.6 normalisation (see module docstring); ``sources=None`` means exact."""
    n = len(raw)
    if n <= 2:
        return np.zeros(n)
    k = n if sources is None else len(sources)
    if k == n:
        return raw / ((n - 1) * (n - 2))
    scaled = raw / (k * (n - 2))
    scaled[sources] = raw[sources] / ((k - 1) * (n - 2)) if k > 1 else np.nan
    return scaled


def path_lengths(graph: GridGraph) -> np.ndarray:
    """Per-entry path length: distance_km (1.0 when unknown), floored at :data:`MIN_PATH_KM`."""
    return np.maximum(graph.length_km, MIN_PATH_KM)


def sampled_betweenness(graph: GridGraph, sources: np.ndarray) -> np.ndarray:
    """Normalised betweenness of every node of ``graph`` from the given (distinct) source indices."""
    sources = np.asarray(sources, dtype=np.int64)
    if len(np.unique(sources)) != len(sources) or (sources < 0).any() or (sources >= graph.n_nodes).any():
        raise ValueError("betweenness sources must be distinct node indices of the graph")
    raw = brandes_dependencies(graph.adjacency, path_lengths(graph), sources)
    return scale_betweenness(raw, sources)


def _closeness(adjacency: sp.csr_array, path_length: np.ndarray) -> np.ndarray:
    """(n-1) / Σ distances for every node of a connected graph, from every node as source."""
    n = adjacency.shape[0]
    if n <= 1:
        return np.zeros(n)
    uniform = bool((path_length == path_length[0]).all())
    totals = np.empty(n)
    per_chunk = max(1, CHUNK_ENTRIES // max(n, 1))
    for start in range(0, n, per_chunk):
        batch = np.arange(start, min(n, start + per_chunk))
        dist, _ = _shortest_distances(adjacency, path_length, batch, uniform)
        totals[batch] = dist.sum(axis=1, dtype=np.float64) * (path_length[0] if uniform else 1.0)
    return (n - 1) / totals


def _pagerank(strength: sp.csr_array) -> tuple[np.ndarray, int, bool]:
    n = strength.shape[0]
    out = np.asarray(strength.sum(axis=1)).ravel()
    inverse = np.zeros(n)
    inverse[out != 0] = 1.0 / out[out != 0]
    transition = (sp.diags_array(inverse) @ strength).tocsr()
    x = np.full(n, 1.0 / n)
    p = np.full(n, 1.0 / n)
    dangling = np.flatnonzero(out == 0)
    for iteration in range(1, PAGERANK_MAX_ITER + 1):
        last = x
        x = PAGERANK_ALPHA * (x @ transition + x[dangling].sum() * p) + (1 - PAGERANK_ALPHA) * p
        if np.abs(x - last).sum() < n * POWER_TOL:
            return x, iteration, True
    return x, PAGERANK_MAX_ITER, False


def _eigenvector(strength: sp.csr_array) -> tuple[np.ndarray, int, bool]:
    n = strength.shape[0]
    x = np.full(n, 1.0 / n)
    for iteration in range(1, EIGENVECTOR_MAX_ITER + 1):
        last = x
        x = last + strength @ last  # (A + I) x, as networkx
        norm = float(np.sqrt((x * x).sum())) or 1.0
        x = x / norm
        if np.abs(x - last).sum() < n * POWER_TOL:
            return x, iteration, True
    return x, EIGENVECTOR_MAX_ITER, False


def _clustering_and_reach(adjacency: sp.csr_array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Local clustering coefficient and exact 1-, 2-, 3-hop neighbour counts."""
    n = adjacency.shape[0]
    binary = sp.csr_array((np.ones(adjacency.nnz), adjacency.indices, adjacency.indptr), shape=(n, n))
    degree = np.diff(binary.indptr).astype(np.float64)
    closed_pairs = np.asarray((binary @ binary).multiply(binary).sum(axis=1)).ravel()  # 2 × triangles
    with np.errstate(divide="ignore", invalid="ignore"):
        clustering = np.where(degree > 1, closed_pairs / (degree * (degree - 1)), 0.0)
    ball1 = (binary + sp.eye_array(n, format="csr")).astype(bool).astype(np.int8)
    ball2 = (ball1 @ ball1).astype(bool).astype(np.int8)
    ball3 = (ball2 @ ball1).astype(bool)
    size1, size2, size3 = (np.diff(m.tocsr().indptr) for m in (ball1, ball2, ball3))
    return clustering, size1 - 1, size2 - size1, size3 - size2


def betweenness_bands(betweenness: np.ndarray) -> np.ndarray:
    """§3.1 bands: > 0.5 critical bottleneck, 0.1–0.5 high, < 0.1 moderate; None for null."""
    bands = np.select([betweenness > 0.5, betweenness >= 0.1], ["critical bottleneck", "high"], "moderate")
    return np.where(np.isnan(betweenness), None, bands.astype(object))


def compute_centrality(
    graph: GridGraph,
    *,
    seed: int = BETWEENNESS_SEED,
    sample_size: int = BETWEENNESS_SAMPLE,
    exact_max_nodes: int = EXACT_BETWEENNESS_MAX_NODES,
) -> CentralityResult:
    """§3.1 metrics for every node (null outside the largest component) plus run metadata."""
    if graph.n_nodes == 0:
        raise ValueError("cannot compute centrality of an empty graph")
    keep = largest_component(graph)
    n = len(keep)
    adjacency, lengths = _induced(graph, keep)
    path_length = np.maximum(lengths, MIN_PATH_KM)
    strength = sp.csr_array(
        (1.0 / np.maximum(lengths, MIN_STRENGTH_KM), adjacency.indices, adjacency.indptr),
        shape=adjacency.shape,
    )

    exact = n <= exact_max_nodes
    sources = np.arange(n) if exact else betweenness_sources(n, min(sample_size, n), seed)
    betweenness = scale_betweenness(
        brandes_dependencies(adjacency, path_length, sources), None if exact else sources
    )
    degree = np.diff(adjacency.indptr) / (n - 1) if n > 1 else np.ones(n)
    closeness = _closeness(adjacency, path_length)
    pagerank, pagerank_iterations, pagerank_converged = _pagerank(strength)
    eigenvector, eigen_iterations, eigen_converged = _eigenvector(strength)
    if not eigen_converged:
        eigenvector = pagerank
    clustering, n1, n2, n3 = _clustering_and_reach(adjacency)
    criticality = graph.criticality_score[keep]
    risk = (
        0.25 * criticality + 0.25 * betweenness + 0.20 * (100 * pagerank) + 0.15 * degree + 0.15 * eigenvector
    )
    top = risk.max()
    risk_normalized = risk / top if top > 0 else np.zeros(n)

    in_lcc = np.zeros(graph.n_nodes, dtype=bool)
    in_lcc[keep] = True

    def full(values: np.ndarray) -> np.ndarray:
        out = np.full(graph.n_nodes, np.nan)
        out[keep] = values
        return out

    def full_int(values: np.ndarray) -> pd.arrays.IntegerArray:
        out = np.zeros(graph.n_nodes, dtype=np.int64)
        out[keep] = values
        return pd.arrays.IntegerArray(out, ~in_lcc)

    betweenness_full = full(betweenness)
    table = pd.DataFrame(
        {
            "node_id": graph.node_id,
            "node_type": graph.node_type_names(),
            "in_largest_component": in_lcc,
            "criticality_score": graph.criticality_score,
            "degree_centrality": full(degree),
            "betweenness_centrality": betweenness_full,
            "closeness_centrality": full(closeness),
            "pagerank": full(pagerank),
            "clustering_coefficient": full(clustering),
            "eigenvector_centrality": full(eigenvector),
            "n1": full_int(n1),
            "n2": full_int(n2),
            "n3": full_int(n3),
            "total_reach": full_int(n1 + n2 + n3),
            "reach_expansion_ratio": full(n2 / np.maximum(n1, 1)),
            "cascade_risk_score": full(risk),
            "cascade_risk_score_normalized": full(risk_normalized),
            "betweenness_band": betweenness_bands(betweenness_full),
        }
    )
    metadata = {
        "n_nodes": graph.n_nodes,
        "largest_component_nodes": n,
        "nodes_outside_largest_component": graph.n_nodes - n,
        "betweenness_mode": "exact" if exact else "sampled",
        "betweenness_sources": len(sources),
        "betweenness_seed": None if exact else seed,
        "betweenness_scaling": "networkx-3.6 normalized, endpoints excluded",
        "path_length_floor_km": MIN_PATH_KM,
        "pagerank_iterations": pagerank_iterations,
        "pagerank_converged": pagerank_converged,
        "eigenvector_iterations": eigen_iterations,
        "eigenvector_converged": eigen_converged,
        "eigenvector_is_pagerank_fallback": not eigen_converged,
    }
    return CentralityResult(table=table, metadata=metadata)
