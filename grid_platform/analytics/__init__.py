"""Grid analytics: CSR network graph, cascade simulation, centrality risk, vegetation fall zones.

Pure domain logic (no Dagster); see docs in each module and grid-analytics.md.
"""

from grid_platform.analytics.cascade import (
    SCENARIOS,
    CascadeParams,
    CascadeResult,
    StormImpact,
    failure_probability,
    scenario_params,
    simulate_cascade,
    simulate_scenario,
    simulate_storm,
    temp_stress,
)
from grid_platform.analytics.centrality import (
    CentralityResult,
    betweenness_sources,
    compute_centrality,
    sampled_betweenness,
)
from grid_platform.analytics.graph import NODE_TYPES, GridGraph, graph_from_frames, tile_graph
from grid_platform.analytics.sources import (
    LINE_ENDPOINT_COLUMNS,
    graph_from_matpower,
    graph_from_network,
    graph_from_pandapower,
    line_endpoints,
    matpower_case_path,
    pandapower_source_net,
)
from grid_platform.analytics.traversal import hop_distances, reachable_node_ids
from grid_platform.analytics.vegetation import (
    VEGETATION_COLUMNS,
    assets_from_graph,
    lines_from_pandapower,
    segments_in_fall_zone,
    vegetation_risk,
)

__all__ = [
    "LINE_ENDPOINT_COLUMNS",
    "NODE_TYPES",
    "SCENARIOS",
    "VEGETATION_COLUMNS",
    "CascadeParams",
    "CascadeResult",
    "CentralityResult",
    "GridGraph",
    "StormImpact",
    "assets_from_graph",
    "betweenness_sources",
    "compute_centrality",
    "failure_probability",
    "graph_from_frames",
    "graph_from_matpower",
    "graph_from_network",
    "graph_from_pandapower",
    "hop_distances",
    "line_endpoints",
    "lines_from_pandapower",
    "matpower_case_path",
    "pandapower_source_net",
    "reachable_node_ids",
    "sampled_betweenness",
    "scenario_params",
    "segments_in_fall_zone",
    "simulate_cascade",
    "simulate_scenario",
    "simulate_storm",
    "temp_stress",
    "tile_graph",
    "vegetation_risk",
]
