"""One published analytics version: the CSR graph and the centrality computed on it.

Cascades need both from the same version (betweenness is aligned with the graph's nodes), so
they are published together (dataset ``analytics``: ``graph.npz`` + ``centrality.parquet``) and
loaded together by the assets and the read API.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from grid_platform.analytics.graph import GridGraph
from grid_platform.publish import Publication

DATASET = "analytics"
GRAPH_FILE = "graph.npz"
CENTRALITY_FILE = "centrality.parquet"


@dataclass(frozen=True)
class AnalyticsSnapshot:
    publication: Publication
    graph: GridGraph
    centrality: pd.DataFrame

    @property
    def betweenness(self) -> np.ndarray:
        return self.centrality["betweenness_centrality"].to_numpy(dtype=np.float64)


def load_snapshot(publication: Publication) -> AnalyticsSnapshot:
    """Graph and centrality of one ``analytics`` publication version."""
    graph = GridGraph.load(publication.file(GRAPH_FILE))
    centrality = pd.read_parquet(publication.file(CENTRALITY_FILE))
    if not np.array_equal(centrality["node_id"].to_numpy(dtype=str), graph.node_id):
        raise ValueError(f"{publication.path}: centrality rows do not follow the graph's nodes")
    return AnalyticsSnapshot(publication, graph, centrality)
