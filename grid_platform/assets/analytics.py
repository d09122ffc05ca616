"""Grid analytics assets (grid-analytics.md), one partition per network like the topology.

Storage. The published topology holds shapes, not connectivity, so ``grid_graph`` builds the CSR
graph from the same registry source the topology was built from (pandapower/SimBench nets with
their loads, CIM networks through the common model; node ids ``bus:<idx>`` as the topology names
buses) and publishes it atomically as dataset ``analytics_graph`` (``graph.npz``, ``nodes.parquet``,
``lines.parquet``). ``grid_centrality`` writes ``analytics.grid_centrality`` to the warehouse and
publishes dataset ``analytics``: the graph it used plus ``centrality.parquet``, one consistent
pair that cascades (assets and the read API) load instead of rebuilding anything.

Risk inputs (trees, ALERT segments) are read through :func:`read_vegetation_points` and
:func:`read_alert_segments` only, so a change of how the risk assets store them is one place.
"""

import base64
import io
import shutil
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from pydantic import Field
from scipy.sparse.csgraph import connected_components

from grid_platform.analytics import (
    NODE_TYPES,
    SCENARIOS,
    GridGraph,
    assets_from_graph,
    compute_centrality,
    graph_from_network,
    graph_from_pandapower,
    line_endpoints,
    pandapower_source_net,
    scenario_params,
    segments_in_fall_zone,
    simulate_storm,
    vegetation_risk,
)
from grid_platform.analytics.cascade import StormImpact
from grid_platform.analytics.snapshot import (
    CENTRALITY_FILE,
    DATASET,
    GRAPH_FILE,
    AnalyticsSnapshot,
    load_snapshot,
)
from grid_platform.analytics.vegetation import OBERRHEIN_CRS
from grid_platform.assets.risk import GRID_RISKS, VEGETATION, read_vegetation_trees
from grid_platform.assets.topology import OWNERS, SEGMENTS, networks
from grid_platform.networks import load_network, load_registry
from grid_platform.publish import Publication, current, publish
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.settings import load_settings

GROUP = "analytics"
SCHEMA = "analytics"
GRAPH_DATASET = "analytics_graph"
TOPOLOGY_DATASET = "topology"
UTM32 = "EPSG:32632"  # CRS of the topology's and the vegetation layer's WKB geometries
MARKDOWN_ROWS = 20

GRID_GRAPH = dg.AssetKey([GROUP, "grid_graph"])
GRID_CENTRALITY = dg.AssetKey([GROUP, "grid_centrality"])
CASCADE_SCENARIOS = dg.AssetKey([GROUP, "cascade_scenarios"])
VEGETATION_EXPOSURE = dg.AssetKey([GROUP, "vegetation_exposure"])
STORM_SCENARIOS = dg.AssetKey([GROUP, "storm_scenarios"])
RISK_TRENDLINE = dg.AssetKey(["risk", "trendline"])
RISK_DAILY = dg.AssetSelection.assets(GRID_RISKS, RISK_TRENDLINE)

# The risk tables are partitioned by date x network: a network's storms follow any new risk date
# and never wait for the (many) dates nobody ran.
STORM_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing().ignore(RISK_DAILY)
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("eager on risk updates")


# Shared helpers ------------------------------------------------------------------------------

def _markdown(frame: pd.DataFrame, rows: int = MARKDOWN_ROWS) -> str:
    if frame.empty:
        return "none"
    more = f"\n\n… {len(frame) - rows} more rows" if len(frame) > rows else ""
    return frame.head(rows).to_markdown(index=False, floatfmt=".4g") + more


def _png(fig: Figure, title: str) -> dg.MetadataValue:
    """A matplotlib Figure (no pyplot: no global state in a shared process) as markdown image."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})")


def _publication(dataset: str, network_id: str, upstream: str) -> Publication:
    publication = current(load_settings().published_dir, dataset, network_id)
    if publication is None:
        raise dg.Failure(f"nothing published as {dataset!r} for network {network_id!r}: materialise {upstream} first")
    return publication


def _snapshot(network_id: str) -> AnalyticsSnapshot:
    return load_snapshot(_publication(DATASET, network_id, "analytics/grid_centrality"))


def _with_network(frame: pd.DataFrame, network_id: str, **columns) -> pd.DataFrame:
    """The frame tagged with its network, typed even when empty (the table may be created from it)."""
    return frame.assign(network_id=pd.Series(network_id, index=frame.index, dtype="string"), **columns)


def _impact_row(impact: StormImpact) -> dict:
    cascade = impact.cascade
    return {
        "affected_assets": cascade.total_affected_nodes,
        "waves": cascade.max_cascade_depth,
        **{f"{name.lower()}s_lost": impact.assets_lost[name] for name in NODE_TYPES},
        "line_km_lost": round(impact.line_km_lost, 3),
        "capacity_lost_mw": round(cascade.affected_capacity_mw, 3),
        "customers_lost": impact.customers_lost,
        "params_hash": cascade.params.params_hash(),
        "simulated_at": cascade.simulation_timestamp,
    }


# Reading the risk assets' results: the one place that knows their storage --------------------

def read_vegetation_points(warehouse: WarehouseResource, network_id: str) -> gpd.GeoDataFrame:
    """The risk vegetation layer of a network (tree_id, height_m, points in EPSG:32632)."""
    trees = read_vegetation_trees(warehouse, network_id)
    geometry = shapely.from_wkb([bytes(g) for g in trees.pop("geom")]) if len(trees) else []
    return gpd.GeoDataFrame(trees, geometry=geometry, crs=UTM32)


def read_alert_segments(warehouse: WarehouseResource, network_id: str, horizon_days: int
                        ) -> tuple[list[date], pd.DataFrame]:
    """The served horizon (the last ``horizon_days`` dates the risk tables hold for the network)
    and its ALERT segments: ``date, segment_id, risk_vector``. Nothing assessed yet: ([], empty)."""
    with warehouse.connect() as con:
        try:
            days = [row[0] for row in con.execute(
                "select distinct date from risk.trendline where network_id = ? and date > "
                "(select max(date) from risk.trendline where network_id = ?) - ? order by date",
                [network_id, network_id, horizon_days]).fetchall()]
            alerts = con.execute(
                "select date, segment_id, risk_vector from risk.grid_risks where network_id = ? "
                "and risk_level = 'ALERT' and date >= ? order by date, segment_id, risk_vector",
                [network_id, days[0] if days else date.max]).df()
        except duckdb.CatalogException:
            return [], pd.DataFrame(columns=["date", "segment_id", "risk_vector"])
    alerts["date"] = pd.to_datetime(alerts["date"]).dt.date
    return days, alerts


# grid_graph ---------------------------------------------------------------------------------

def build_network_graph(network_id: str) -> tuple[GridGraph, pd.DataFrame]:
    """The network's graph and its line end points, from the registry source the topology uses."""
    settings = load_settings()
    spec = load_registry(settings).get(network_id)
    if spec is None:
        raise dg.Failure(f"network {network_id!r} is not in the network registry any more")
    if spec.source in ("pandapower", "simbench"):
        # The source net carries loads and transformer ratings (capacity, customers) that the
        # common topology model drops; the same buses, as test_analytics_assets checks.
        net = pandapower_source_net(spec.source, spec.params)
        return graph_from_pandapower(net, source=f"{spec.source}:{network_id}", node_prefix="bus:"), line_endpoints(net)
    return graph_from_network(load_network(spec, settings))


def _graph_plot(graph: GridGraph, labels: np.ndarray) -> dg.MetadataValue:
    fig = Figure(figsize=(5.6, 4.2), dpi=80)
    ax = fig.subplots()
    edges = graph.entry_source < graph.indices
    a, b = graph.entry_source[edges], graph.indices[edges]
    segments = np.stack([np.column_stack([graph.lon[a], graph.lat[a]]),
                         np.column_stack([graph.lon[b], graph.lat[b]])], axis=1)
    ax.add_collection(LineCollection(segments, colors="#9a9a9a", linewidths=0.6))
    names = graph.node_type_names()
    for name, color in zip(NODE_TYPES, ("#D00000", "#1f77b4", "#7f7f7f", "#2ca02c")):
        keep = names == name
        if keep.any():
            ax.scatter(graph.lon[keep], graph.lat[keep], s=8, color=color, label=f"{name.lower()} ({keep.sum()})")
    ax.set_title(f"{graph.n_nodes} nodes, {graph.n_edges} edges, {len(np.unique(labels))} component(s)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    ax.autoscale()
    ax.set_aspect("equal", adjustable="datalim")
    return _png(fig, "grid graph")


@dg.asset(
    key=GRID_GRAPH, group_name=GROUP, owners=OWNERS, kinds={"python", "numpy", "parquet"}, partitions_def=networks,
    deps=[SEGMENTS], automation_condition=dg.AutomationCondition.eager(),
    description="Undirected CSR graph of the network (grid-analytics.md §1): buses as substation / transformer / "
                "pole / meter nodes, in-service lines, transformers and closed switches as edges, lengths in km. "
                "Built once from the source the topology was built from and published atomically "
                "(published/analytics_graph/<network>/: graph.npz, nodes.parquet, lines.parquet) so no analytics "
                "step or request rebuilds it.",
)
def grid_graph(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    network_id = context.partition_key
    graph, lines = build_network_graph(network_id)
    topology = current(load_settings().published_dir, TOPOLOGY_DATASET, network_id)
    n_components, labels = connected_components(graph.adjacency, directed=False)
    sizes = np.bincount(labels)

    def write(out: Path) -> None:
        graph.save(out / GRAPH_FILE)
        graph.nodes().to_parquet(out / "nodes.parquet", index=False)
        lines.to_parquet(out / "lines.parquet", index=False)

    publication = publish(load_settings().published_dir, GRAPH_DATASET, network_id, write,
                          extra={"nodes": graph.n_nodes, "edges": graph.n_edges})
    types = pd.Series(graph.node_type_names()).value_counts().rename_axis("node_type").reset_index(name="nodes")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": graph.n_nodes,
        "nodes": graph.n_nodes,
        "edges": graph.n_edges,
        "components": int(n_components),
        "largest_component_nodes": int(sizes.max()) if len(sizes) else 0,
        "lines": len(lines),
        "edges_with_length": int(np.isfinite(graph.distance_km).sum() // 2),
        "source": graph.meta.get("source", ""),
        "topology_version": topology.version if topology else "not published",
        "version": publication.version,
        "path": dg.MetadataValue.path(str(publication.path)),
        "node_types": dg.MetadataValue.md(types.to_markdown(index=False)),
        "graph_plot": _graph_plot(graph, labels),
    })


# grid_centrality ----------------------------------------------------------------------------

class CentralityConfig(dg.Config):
    sample_size: int = Field(default=500, ge=2, le=100_000,
                             description="Betweenness sources above the exact limit (spec §3.1: min(500, n)).")
    seed: int = Field(default=20_240_917, description="Seed of the betweenness source sample (recorded).")
    exact_max_nodes: int = Field(default=1_000, ge=0, le=100_000,
                                 description="Largest component size with exact betweenness (spec §3.1: 1,000).")


def _centrality_plot(table: pd.DataFrame) -> dg.MetadataValue:
    scored = table[table["in_largest_component"]]
    fig = Figure(figsize=(6.4, 2.8), dpi=80)
    left, right = fig.subplots(1, 2)
    left.hist(scored["cascade_risk_score_normalized"], bins=30, color="#1f77b4")
    left.set_xlabel("cascade risk (normalised)")
    left.set_ylabel("nodes")
    right.scatter(scored["betweenness_centrality"], 100 * scored["pagerank"], s=6,
                  c=scored["cascade_risk_score_normalized"], cmap="inferno_r")
    right.set_xlabel("betweenness")
    right.set_ylabel("100 × PageRank")
    return _png(fig, "centrality")


@dg.asset(
    key=GRID_CENTRALITY, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb", "parquet"},
    partitions_def=networks, pool="duckdb", deps=[GRID_GRAPH], automation_condition=dg.AutomationCondition.eager(),
    check_specs=[dg.AssetCheckSpec(
        "nodes_outside_largest_component", asset=GRID_CENTRALITY,
        description="Centrality is scoped to the largest connected component (§3.1): the nodes outside it carry "
                    "null metrics. WARN when there are any, with their count.")],
    description="Per-node centrality and composite cascade risk (grid-analytics.md §3.1): degree, betweenness "
                "(exact up to 1,000 nodes, else sampled with a fixed recorded seed; path length = km), closeness, "
                "PageRank, eigenvector, clustering, 1-3 hop reach, cascade_risk_score = 0.25 criticality + 0.25 "
                "betweenness + 0.20 (100 PageRank) + 0.15 degree + 0.15 eigenvector, and its band. Written to "
                "analytics.grid_centrality (dbt mart analytics_node_risk) and published with the graph it used.",
)
def grid_centrality(context: dg.AssetExecutionContext, config: CentralityConfig, warehouse: WarehouseResource):
    network_id = context.partition_key
    graph_publication = _publication(GRAPH_DATASET, network_id, "analytics/grid_graph")
    graph = GridGraph.load(graph_publication.file(GRAPH_FILE))
    result = compute_centrality(graph, seed=config.seed, sample_size=config.sample_size,
                                exact_max_nodes=config.exact_max_nodes)
    table = result.table.assign(node_name=graph.node_name, lat=graph.lat, lon=graph.lon)

    def write(out: Path) -> None:
        shutil.copyfile(graph_publication.file(GRAPH_FILE), out / GRAPH_FILE)
        table.to_parquet(out / CENTRALITY_FILE, index=False)

    publication = publish(load_settings().published_dir, DATASET, network_id, write,
                          extra={"graph_version": graph_publication.version, **result.metadata})
    stored = _with_network(table, network_id, graph_version=graph_publication.version,
                          computed_at=pd.Timestamp(datetime.now(UTC)))
    warehouse.replace_rows(SCHEMA, "grid_centrality", stored, {"network_id": network_id})
    top = table.sort_values(["cascade_risk_score_normalized", "node_id"], ascending=[False, True])[
        ["node_id", "node_name", "node_type", "betweenness_centrality", "pagerank", "degree_centrality",
         "cascade_risk_score_normalized", "betweenness_band"]]
    bands = table["betweenness_band"].fillna("outside largest component").value_counts()
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": len(table),
        **{k: v for k, v in result.metadata.items() if v is not None},
        "graph_version": graph_publication.version,
        "version": publication.version,
        "betweenness_bands": dg.MetadataValue.md(bands.rename_axis("band").reset_index(name="nodes")
                                                 .to_markdown(index=False)),
        "top_risk_nodes": dg.MetadataValue.md(_markdown(top)),
        "centrality_plot": _centrality_plot(table),
    })
    outside = result.metadata["nodes_outside_largest_component"]
    yield dg.AssetCheckResult(check_name="nodes_outside_largest_component", passed=outside == 0,
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"nodes_outside": outside,
                                        "largest_component_nodes": result.metadata["largest_component_nodes"]})


# cascade_scenarios --------------------------------------------------------------------------

class CascadeScenariosConfig(dg.Config):
    worst_n: int = Field(default=5, ge=1, le=100, description="Patient zeros kept per scenario: the worst N.")
    candidates: int = Field(default=100, ge=1, le=10_000,
                            description="Patient zeros simulated per scenario: the nodes of highest composite "
                                        "cascade risk (ties by node_id).")
    scenarios: list[str] = Field(default_factory=lambda: list(SCENARIOS),
                                 description=f"§2.4 presets to run, of {sorted(SCENARIOS)}.")
    max_waves: int = Field(default=10, ge=0, le=1000)
    max_nodes: int = Field(default=100, ge=1, le=1_000_000, description="Failures per cascade, patient zero included.")


def worst_cascades(snapshot: AnalyticsSnapshot, config: CascadeScenariosConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The worst ``worst_n`` patient zeros per scenario (most customers, then assets, then km lost)
    among the ``candidates`` riskiest nodes, and the wave breakdown of each kept cascade."""
    unknown = sorted(set(config.scenarios) - set(SCENARIOS))
    if unknown:
        raise dg.Failure(f"unknown scenario(s) {unknown}; presets are {sorted(SCENARIOS)}")
    ranked = snapshot.centrality.sort_values(["cascade_risk_score", "node_id"], ascending=[False, True],
                                             na_position="last")
    candidates = ranked["node_id"].head(config.candidates).tolist()
    rows, waves = [], []
    for scenario in config.scenarios:
        params = scenario_params(scenario, max_waves=config.max_waves, max_nodes=config.max_nodes)
        impacts = {node: simulate_storm(snapshot.graph, [node], snapshot.betweenness, params, scenario_name=scenario)
                   for node in candidates}
        frame = pd.DataFrame([{"scenario_name": scenario, "patient_zero": node, **_impact_row(impact)}
                              for node, impact in impacts.items()])
        frame = frame.sort_values(["customers_lost", "affected_assets", "line_km_lost", "patient_zero"],
                                  ascending=[False, False, False, True]).head(config.worst_n)
        frame.insert(1, "rank", np.arange(1, len(frame) + 1))
        rows.append(frame)
        for node in frame["patient_zero"]:
            waves.append(impacts[node].cascade.wave_breakdown.assign(scenario_name=scenario, patient_zero=node))
    worst = pd.concat(rows, ignore_index=True)
    graph = snapshot.graph
    index = graph.index_of(worst["patient_zero"].to_numpy())
    worst.insert(3, "patient_zero_name", graph.node_name[index])
    worst.insert(4, "patient_zero_type", graph.node_type_names(index))
    return worst, pd.concat(waves, ignore_index=True)


def _cascade_plot(worst: pd.DataFrame, waves: pd.DataFrame) -> dg.MetadataValue:
    fig = Figure(figsize=(6.4, 2.8), dpi=80)
    ax = fig.subplots()
    top = worst[worst["rank"] == 1]
    for scenario, node in zip(top["scenario_name"], top["patient_zero"]):
        rows = waves[(waves["scenario_name"] == scenario) & (waves["patient_zero"] == node)]
        ax.plot(rows["wave_number"], rows["nodes_failed"].cumsum(), marker="o", label=f"{scenario}: {node}")
    ax.set_xlabel("wave")
    ax.set_ylabel("assets failed (cumulative)")
    ax.legend(fontsize=7)
    return _png(fig, "worst cascades")


@dg.asset(
    key=CASCADE_SCENARIOS, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb"}, partitions_def=networks,
    pool="duckdb", deps=[GRID_CENTRALITY], automation_condition=dg.AutomationCondition.eager(),
    description="Deterministic wave-by-wave cascades (grid-analytics.md §2) under each §2.4 scenario preset from "
                "the network's riskiest nodes; the worst N patient zeros per scenario (most customers, then assets "
                "and line km lost) with waves, affected assets by type, km, capacity and customers. Tables "
                "analytics.cascade_scenarios and analytics.cascade_scenario_waves; N is run config.",
)
def cascade_scenarios(context: dg.AssetExecutionContext, config: CascadeScenariosConfig,
                      warehouse: WarehouseResource) -> dg.MaterializeResult:
    network_id = context.partition_key
    snapshot = _snapshot(network_id)
    worst, waves = worst_cascades(snapshot, config)
    where = {"network_id": network_id}
    warehouse.replace_rows(SCHEMA, "cascade_scenarios",
                           _with_network(worst, network_id, analytics_version=snapshot.publication.version), where)
    warehouse.replace_rows(SCHEMA, "cascade_scenario_waves", _with_network(waves, network_id), where)
    shown = worst[["scenario_name", "rank", "patient_zero", "patient_zero_name", "waves", "affected_assets",
                   "line_km_lost", "capacity_lost_mw", "customers_lost"]]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(worst),
        "scenarios": ", ".join(config.scenarios),
        "candidates_per_scenario": min(config.candidates, snapshot.graph.n_nodes),
        "worst_n": config.worst_n,
        "analytics_version": snapshot.publication.version,
        "max_customers_lost": int(worst["customers_lost"].max()),
        "worst_patient_zeros": dg.MetadataValue.md(_markdown(shown, 4 * config.worst_n)),
        "cascade_plot": _cascade_plot(worst, waves),
    })


# vegetation_exposure ------------------------------------------------------------------------

def _topology_lines(network_id: str) -> gpd.GeoDataFrame:
    """Line segments ('tratte') of the published topology: line_id = segment_id, line_class = conductor."""
    publication = _publication(TOPOLOGY_DATASET, network_id, "topology/segments")
    shapes = pd.read_parquet(publication.file("shapes.parquet"), columns=["segment_id", "asset_type",
                                                                           "conductor_type", "geom"])
    shapes = shapes[shapes["asset_type"] == "ac_line_segment"]
    return gpd.GeoDataFrame({"line_id": shapes["segment_id"].to_numpy(),
                             "line_class": shapes["conductor_type"].fillna("unknown").to_numpy()},
                            geometry=shapely.from_wkb(shapes["geom"].to_numpy()), crs=UTM32)


def _vegetation_plot(trees: pd.DataFrame) -> dg.MetadataValue:
    fig = Figure(figsize=(6.4, 2.6), dpi=80)
    ax = fig.subplots()
    colors = {"critical": "#D00000", "warning": "#F7A000", "monitor": "#1f77b4", "safe": "#2ca02c"}
    for level, color in colors.items():
        rows = trees[trees["risk_level"] == level]
        if len(rows):
            ax.scatter(rows["distance_to_line_m"], rows["height_m"], s=5, color=color, label=f"{level} ({len(rows)})")
    heights = np.linspace(0, max(float(trees["height_m"].max()), 1.0), 50)
    ax.plot(1.3 * heights, heights, color="black", linewidth=0.8, label="fall zone 1.3 h")
    ax.set_xlim(0, min(200.0, max(float(trees["distance_to_line_m"].max()), 1.0)))
    ax.set_xlabel("distance to nearest line (m)")
    ax.set_ylabel("tree height (m)")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig, "vegetation")


@dg.asset(
    key=VEGETATION_EXPOSURE, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb"}, partitions_def=networks,
    pool="duckdb", deps=[GRID_GRAPH, VEGETATION], automation_condition=dg.AutomationCondition.eager(),
    description="Vegetation fall-zone exposure (grid-analytics.md §4, fall zone = 1.3 × tree height) of the risk "
                "vegetation layer: per tree the §4 risk score and level against the nearest line segment in metres "
                "(EPSG:25832) and the nearest station/pole (analytics.vegetation_tree_risk), and every line segment "
                "within the fall zone of at least one tree (analytics.vegetation_exposure). The risk assets' "
                "tree-strike spans cut lines into stretches; this scores trees and segments.",
)
def vegetation_exposure(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    network_id = context.partition_key
    trees = read_vegetation_points(warehouse, network_id)
    lines = _topology_lines(network_id)
    graph = GridGraph.load(_publication(GRAPH_DATASET, network_id, "analytics/grid_graph").file(GRAPH_FILE))
    scored = vegetation_risk(trees, lines, assets_from_graph(graph), metric_crs=OBERRHEIN_CRS)
    exposed = segments_in_fall_zone(trees, lines, metric_crs=OBERRHEIN_CRS)
    exposed["tree_ids"] = exposed["tree_ids"].map(lambda ids: [str(i) for i in ids])
    where = {"network_id": network_id}
    warehouse.replace_rows(SCHEMA, "vegetation_tree_risk", _with_network(scored, network_id), where)
    warehouse.replace_rows(SCHEMA, "vegetation_exposure", _with_network(exposed, network_id), where)
    levels = scored["risk_level"].value_counts().reindex(["critical", "warning", "monitor", "safe"], fill_value=0)
    lengths = pd.Series(shapely.length(lines.geometry.to_numpy()), index=lines["line_id"].to_numpy())
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(exposed),
        "trees": len(scored),
        "segments": len(lines),
        "segments_in_fall_zone": len(exposed),
        "km_in_fall_zone_segments": round(float(lengths.reindex(exposed["line_id"]).sum()) / 1000, 3),
        "trees_by_level": dg.MetadataValue.md(levels.rename_axis("risk_level").reset_index(name="trees")
                                              .to_markdown(index=False)),
        "most_exposed_segments": dg.MetadataValue.md(_markdown(
            exposed.drop(columns="tree_ids").sort_values(["trees_in_fall_zone", "line_id"], ascending=[False, True]))),
        "vegetation_plot": _vegetation_plot(scored),
    })


# storm_scenarios ----------------------------------------------------------------------------

class StormScenariosConfig(dg.Config):
    scenario: str = Field(default="storm_hurricane", description=f"§2.4 preset of the spread, of {sorted(SCENARIOS)}.")
    spread_limit: int = Field(default=100, ge=0, le=1_000_000,
                              description="Failures allowed beyond the storm's own (max_nodes = seeds + this).")
    max_waves: int = Field(default=10, ge=0, le=1000)


STORM_COLUMNS = ["date", "alert_segments", "alert_lines", "seed_nodes", "spread_nodes", "affected_assets", "waves",
                 *(f"{name.lower()}s_lost" for name in NODE_TYPES), "line_km_lost", "capacity_lost_mw",
                 "customers_lost", "params_hash", "simulated_at"]
DATE = pd.ArrowDtype(pa.date32())  # a DuckDB DATE
STORM_TYPES = {"date": DATE, **{c: "int64" for c in STORM_COLUMNS[1:-5]}, "line_km_lost": "float64",
               "capacity_lost_mw": "float64", "customers_lost": "int64", "params_hash": "string",
               "simulated_at": "datetime64[ns, UTC]"}
FAILED_NODE_TYPES = {"date": DATE, "node_id": "string", "node_type": "string", "wave": "int32",
                     "triggered_by": "string"}


def storm_days(snapshot: AnalyticsSnapshot, lines: pd.DataFrame, fragments: pd.DataFrame, days: list[date],
               alerts: pd.DataFrame, config: StormScenariosConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per day of the horizon the cascade from every node of an ALERT segment's lines (both end
    buses of each line fail), and the failed nodes. A day without ALERT loses nothing."""
    segment_lines = fragments[["segment_id", "line_id"]].drop_duplicates()
    endpoints = lines.melt(id_vars="line_id", value_vars=["from_node_id", "to_node_id"], value_name="node_id")
    in_graph = np.isin(endpoints["node_id"].to_numpy(dtype=str), snapshot.graph.node_id)
    endpoints = endpoints[in_graph]
    rows, failed = [], []
    for day in days:
        today = alerts[alerts["date"] == day]
        day_lines = segment_lines[segment_lines["segment_id"].isin(today["segment_id"])]
        seeds = sorted(set(endpoints.loc[endpoints["line_id"].isin(day_lines["line_id"]), "node_id"]))
        row = {"date": day, "alert_segments": int(today["segment_id"].nunique()),
               "alert_lines": int(day_lines["line_id"].nunique()), "seed_nodes": len(seeds)}
        if not seeds:
            rows.append({**row, "spread_nodes": 0, "affected_assets": 0, "waves": 0,
                         **{f"{name.lower()}s_lost": 0 for name in NODE_TYPES}, "line_km_lost": 0.0,
                         "capacity_lost_mw": 0.0, "customers_lost": 0})
            continue
        params = replace(scenario_params(config.scenario, max_waves=config.max_waves),
                         max_nodes=len(seeds) + config.spread_limit)
        impact = simulate_storm(snapshot.graph, seeds, snapshot.betweenness, params, scenario_name=config.scenario)
        rows.append({**row, "spread_nodes": impact.spread_count, **_impact_row(impact)})
        order = impact.cascade.cascade_order
        failed.append(pd.DataFrame({"date": day, "node_id": order["node_id"].astype(str),
                                    "node_type": order["node_type"].astype(str), "wave": order["wave_depth"],
                                    "triggered_by": order["triggered_by"].astype(object)}))
    # Explicit types: the warehouse table is created from the first frame, which may be empty.
    table = pd.DataFrame(rows, columns=STORM_COLUMNS).astype(STORM_TYPES)
    nodes = (pd.concat(failed, ignore_index=True) if failed
             else pd.DataFrame(columns=list(FAILED_NODE_TYPES))).astype(FAILED_NODE_TYPES)
    return table, nodes


def _storm_plot(table: pd.DataFrame) -> dg.MetadataValue:
    fig = Figure(figsize=(6.4, 2.6), dpi=80)
    left, right = fig.subplots(1, 2)
    labels = [str(d) for d in table["date"]]
    left.bar(labels, table["seed_nodes"], color="#D00000", label="hit by ALERT")
    left.bar(labels, table["spread_nodes"], bottom=table["seed_nodes"], color="#F7A000", label="cascade")
    left.set_ylabel("assets lost")
    left.legend(fontsize=7)
    right.bar(labels, table["customers_lost"], color="#1f77b4")
    right.set_ylabel("customers lost")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    return _png(fig, "storm")


@dg.asset(
    key=STORM_SCENARIOS, group_name=GROUP, owners=OWNERS, kinds={"python", "duckdb"}, partitions_def=networks,
    pool="duckdb", deps=[GRID_CENTRALITY, GRID_RISKS, RISK_TRENDLINE], automation_condition=STORM_AUTOMATION,
    description="Weather risk joined with cascade analysis: for each day of the served risk horizon, the lines of "
                "the segments at ALERT (risk.grid_risks) fail at once and the storm_hurricane preset spreads the "
                "failure through the graph (§2.2 from several seeds). Per day the assets by type, line km, "
                "capacity and customers that would be lost (analytics.storm_scenarios) and the failed nodes "
                "(analytics.storm_failed_nodes).",
)
def storm_scenarios(context: dg.AssetExecutionContext, config: StormScenariosConfig,
                    warehouse: WarehouseResource) -> dg.MaterializeResult:
    from grid_platform.risk.config import load_config

    if config.scenario not in SCENARIOS:
        raise dg.Failure(f"unknown scenario {config.scenario!r}; presets are {sorted(SCENARIOS)}")
    network_id = context.partition_key
    snapshot = _snapshot(network_id)
    lines = pd.read_parquet(_publication(GRAPH_DATASET, network_id, "analytics/grid_graph").file("lines.parquet"))
    fragments = pd.read_parquet(_publication(TOPOLOGY_DATASET, network_id, "topology/segments")
                                .file("fragments.parquet"), columns=["segment_id", "line_id"])
    days, alerts = read_alert_segments(warehouse, network_id, load_config().horizon_days)
    table, failed = storm_days(snapshot, lines, fragments, days, alerts, config)
    where = {"network_id": network_id}
    warehouse.replace_rows(SCHEMA, "storm_scenarios", _with_network(table, network_id), where)
    warehouse.replace_rows(SCHEMA, "storm_failed_nodes", _with_network(failed, network_id), where)
    metadata = {
        "dagster/row_count": len(table),
        "horizon": f"{days[0]} .. {days[-1]}" if days else "no risk tables yet",
        "scenario": config.scenario,
        "alert_segments": int(alerts["segment_id"].nunique()),
        "assets_lost_max": int(table["affected_assets"].max()) if len(table) else 0,
        "customers_lost_max": int(table["customers_lost"].max()) if len(table) else 0,
        "per_day": dg.MetadataValue.md(_markdown(table.drop(columns=["params_hash", "simulated_at"]))),
    }
    if len(table):
        metadata["storm_plot"] = _storm_plot(table)
    return dg.MaterializeResult(metadata=metadata)


analytics_assets = [grid_graph, grid_centrality, cascade_scenarios, vegetation_exposure, storm_scenarios]
# Vegetation exposure needs the risk vegetation layer and follows it by its automation condition.
analytics_job = dg.define_asset_job(
    "analytics_job",
    selection=dg.AssetSelection.assets(*analytics_assets) - dg.AssetSelection.assets(VEGETATION_EXPOSURE),
    description="Graph, centrality, cascade scenarios and storm scenarios of one network (partition).",
)
