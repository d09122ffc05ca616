"""Plain BFS on the CSR graph: hop distances and reachable sets.

The traversal itself is scipy's C ``breadth_first_order``. Hop levels are recovered without a
Python loop over nodes: in BFS order the parents' positions never decrease, so level k+1 is
the run of positions whose parent lies in level k, found with one binary search per level.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order

from grid_platform.analytics.graph import GridGraph


def csr_entries(indptr: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR entry positions of ``nodes``' rows, concatenated in the given node order, and row sizes."""
    starts = indptr[nodes]
    counts = indptr[nodes + 1] - starts
    run_start = np.cumsum(counts) - counts
    entries = np.repeat(starts - run_start, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    return entries, counts


def bfs_levels(adjacency: sp.csr_array, source: int) -> tuple[np.ndarray, np.ndarray]:
    """BFS visiting order from ``source`` and the hop level of each visited node (same order)."""
    order, predecessors = breadth_first_order(adjacency, source, directed=True, return_predecessors=True)
    position = np.empty(adjacency.shape[0], dtype=np.int64)
    position[order] = np.arange(len(order))
    parent_position = position[predecessors[order[1:]]]
    bounds = [0, 1]
    while bounds[-1] < len(order):
        bounds.append(int(np.searchsorted(parent_position, bounds[-1] - 1, side="right")) + 1)
    levels = np.repeat(np.arange(len(bounds) - 1, dtype=np.int32), np.diff(bounds))
    return order, levels


def hop_distances(graph: GridGraph, source_id: str, max_hops: int | None = None) -> np.ndarray:
    """Hop distance of every node from ``source_id`` (int32, -1 when unreachable or beyond max_hops)."""
    source = int(graph.index_of(source_id)[0])
    order, levels = bfs_levels(graph.adjacency, source)
    hops = np.full(graph.n_nodes, -1, dtype=np.int32)
    hops[order] = levels
    if max_hops is not None:
        hops[hops > max_hops] = -1
    return hops


def reachable_node_ids(graph: GridGraph, source_id: str, max_hops: int | None = None) -> np.ndarray:
    """Node ids reachable from ``source_id`` (within ``max_hops``), in ascending node_id order."""
    return graph.node_id[hop_distances(graph, source_id, max_hops) >= 0]
