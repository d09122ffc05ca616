"""Analytics assets over the real oberrhein_mv network: topology and the risk vegetation layer are
materialised first, then the analytics chain (graph, centrality, cascade scenarios, vegetation
exposure, storm scenarios) lands in the warehouse and the publications; a real risk run (DWD
reference weather of a hot July week) feeds the storm scenarios."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from analytics_platform_fixtures import NETWORK, analytics_platform

from grid_platform.analytics import GridGraph, graph_from_network, scenario_params, simulate_storm
from grid_platform.analytics.snapshot import load_snapshot
from grid_platform.assets.analytics import (
    CASCADE_SCENARIOS,
    GRAPH_DATASET,
    GRID_CENTRALITY,
    GRID_GRAPH,
    STORM_SCENARIOS,
    VEGETATION_EXPOSURE,
    analytics_assets,
    analytics_job,
    grid_graph,
    storm_scenarios,
)
from grid_platform.assets.risk import heat_thresholds, risk_tables, vegetation, weather_reference
from grid_platform.assets.topology import grid_topology
from grid_platform.publish import current
from grid_platform.settings import PROJECT_ROOT, load_settings
from grid_platform.topology import mv_oberrhein_network

DBT = Path(sys.executable).with_name("dbt")
HOT_DAY = date(2025, 7, 15)  # Mannheim's reference year is hot from 13 to 18 July


@pytest.fixture(scope="module")
def platform(tmp_path_factory, project_downloads):
    with analytics_platform(tmp_path_factory.mktemp("analytics_assets"), project_downloads) as p:
        resources = {"warehouse": p.warehouse}
        assert dg.materialize([grid_topology, vegetation], partition_key=NETWORK, instance=p.instance,
                              resources=resources).success
        result = dg.materialize(analytics_assets, partition_key=NETWORK, instance=p.instance, resources=resources,
                                run_config={"ops": {"analytics__cascade_scenarios": {"config": {"worst_n": 3}}}})
        assert result.success
        p.result = result
        yield p


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def test_every_asset_shows_a_plot_and_is_grouped(platform):
    for key, plot in ((GRID_GRAPH, "graph_plot"), (GRID_CENTRALITY, "centrality_plot"),
                      (CASCADE_SCENARIOS, "cascade_plot"), (VEGETATION_EXPOSURE, "vegetation_plot")):
        assert _metadata(platform.result, key)[plot].startswith("![")
        assert "data:image/png;base64," in _metadata(platform.result, key)[plot]
    for asset in analytics_assets:
        assert asset.group_names_by_key[asset.key] == "analytics"
        assert asset.automation_conditions_by_key[asset.key] is not None
    assert analytics_job.name == "analytics_job"


def test_graph_is_published_once_with_the_topology_buses(platform):
    metadata = _metadata(platform.result, GRID_GRAPH)
    assert (metadata["nodes"], metadata["edges"]) == (320, 318)
    assert metadata["components"] == 2  # mv_oberrhein's open ring switches split its two HV/MV areas
    publication = current(load_settings().published_dir, GRAPH_DATASET, NETWORK)
    graph = GridGraph.load(publication.file("graph.npz"))
    # The pandapower source's graph has exactly the buses and connections of the topology's model.
    topology_graph, lines = graph_from_network(mv_oberrhein_network())
    assert np.array_equal(graph.node_id, topology_graph.node_id)
    assert graph.edges()[["from_node_id", "to_node_id"]].equals(topology_graph.edges()[["from_node_id", "to_node_id"]])
    published_lines = pd.read_parquet(publication.file("lines.parquet"))
    assert set(published_lines["line_id"]) == set(lines["line_id"])
    # An unchanged graph is the same bytes: a rerun keeps the publication.
    assert dg.materialize([grid_graph], partition_key=NETWORK, instance=platform.instance).success
    assert current(load_settings().published_dir, GRAPH_DATASET, NETWORK).version == publication.version


def test_centrality_lands_in_the_warehouse_with_the_spec_weights(platform):
    rows = platform.query("select node_id, criticality_score, betweenness_centrality, pagerank, degree_centrality, "
                          "eigenvector_centrality, cascade_risk_score from analytics.grid_centrality "
                          "where network_id = ? and in_largest_component order by node_id", [NETWORK])
    table = pd.DataFrame(rows, columns=["node_id", "crit", "btw", "pr", "deg", "eig", "risk"])
    expected = 0.25 * table["crit"] + 0.25 * table["btw"] + 0.20 * 100 * table["pr"] + 0.15 * table["deg"] \
        + 0.15 * table["eig"]
    np.testing.assert_allclose(table["risk"], expected, rtol=1e-12)
    total = platform.query("select count(*) from analytics.grid_centrality where network_id = ?", [NETWORK])[0][0]
    assert total == 320
    [check] = [c for c in platform.result.get_asset_check_evaluations()
               if c.check_name == "nodes_outside_largest_component"]
    assert not check.passed and check.metadata["nodes_outside"].value == 320 - len(table)


def test_cascade_scenarios_keep_the_worst_n_per_preset(platform):
    worst = pd.DataFrame(platform.query(
        "select scenario_name, rank, patient_zero, affected_assets, line_km_lost, customers_lost, waves "
        "from analytics.cascade_scenarios where network_id = ? order by scenario_name, rank", [NETWORK]),
        columns=["scenario", "rank", "patient_zero", "assets", "km", "customers", "waves"])
    assert worst.groupby("scenario").size().to_dict() == {s: 3 for s in
                                                           ("heat_wave", "normal", "storm_hurricane", "winter_storm")}
    snapshot = load_snapshot(current(load_settings().published_dir, "analytics", NETWORK))
    for row in worst.itertuples():
        again = simulate_storm(snapshot.graph, [row.patient_zero], snapshot.betweenness,
                               scenario_params(row.scenario), scenario_name=row.scenario)
        assert (again.cascade.total_affected_nodes, again.customers_lost, again.cascade.max_cascade_depth) == \
            (row.assets, row.customers, row.waves)
        assert again.line_km_lost == pytest.approx(row.km, abs=1e-3)
    for _, group in worst.groupby("scenario"):
        keys = list(zip(group["customers"], group["assets"]))
        assert keys == sorted(keys, reverse=True)
    waves = platform.query("select count(*) from analytics.cascade_scenario_waves where network_id = ?", [NETWORK])
    assert waves[0][0] == int((worst["waves"] + 1).sum())


def test_vegetation_exposure_scores_trees_and_segments_in_the_fall_zone(platform):
    trees = platform.query("select count(*) from risk.vegetation_trees where network_id = ?", [NETWORK])[0][0]
    scored = pd.DataFrame(platform.query(
        "select risk_level, distance_to_line_m, fall_zone_m, risk_score from analytics.vegetation_tree_risk "
        "where network_id = ?", [NETWORK]), columns=["level", "d", "fall", "score"])
    assert len(scored) == trees > 0
    critical = scored["level"] == "critical"
    assert (scored.loc[critical, "d"] <= scored.loc[critical, "fall"] + 0.01).all()
    assert scored.loc[critical, "score"].between(0.85, 1.0).all()
    exposed = pd.DataFrame(platform.query(
        "select line_id, trees_in_fall_zone, min_distance_m, max_tree_height_m from analytics.vegetation_exposure "
        "where network_id = ?", [NETWORK]), columns=["segment", "trees", "d", "h"])
    assert len(exposed) > 0 and (exposed["d"] <= 1.3 * exposed["h"] + 1e-6).all()
    segments = {r[0] for r in platform.query("select segment_id from topology.segments where network_id = ?",
                                             [NETWORK])}
    assert set(exposed["segment"]) <= segments


def test_storm_scenarios_are_empty_before_any_risk_run(platform):
    metadata = _metadata(platform.result, STORM_SCENARIOS)
    assert metadata["horizon"] == "no risk tables yet" and metadata["dagster/row_count"] == 0


@pytest.mark.slow
def test_storm_scenarios_cascade_from_the_alert_segments_of_a_real_risk_run(platform):
    resources = {"warehouse": platform.warehouse}
    key = dg.MultiPartitionKey({"date": HOT_DAY.isoformat(), "network": NETWORK})
    assert dg.materialize([heat_thresholds], instance=platform.instance, resources=resources).success
    assert dg.materialize([weather_reference, risk_tables], partition_key=key, instance=platform.instance,
                          resources=resources).success
    result = dg.materialize([storm_scenarios], partition_key=NETWORK, instance=platform.instance, resources=resources)
    assert result.success
    days = pd.DataFrame(platform.query("select * exclude (network_id) from analytics.storm_scenarios "
                                       "where network_id = ? order by date", [NETWORK]))
    days.columns = [c[0] for c in platform.query("select column_name from information_schema.columns where "
                                                 "table_schema = 'analytics' and table_name = 'storm_scenarios' "
                                                 "and column_name <> 'network_id' order by ordinal_position")]
    assert [d.isoformat() for d in pd.to_datetime(days["date"]).dt.date] == ["2025-07-15", "2025-07-16", "2025-07-17"]
    alerts = pd.DataFrame(platform.query("select date, segment_id from risk.grid_risks where network_id = ? and "
                                         "risk_level = 'ALERT' and date >= ?", [NETWORK, HOT_DAY]),
                          columns=["date", "segment_id"])
    assert days["alert_segments"].sum() == alerts.groupby("date")["segment_id"].nunique().sum()
    # Recompute the worst day from the published graph, the topology's fragments and the line end points.
    worst = days.sort_values("seed_nodes").iloc[-1]
    if worst["seed_nodes"] == 0:
        pytest.skip("the reference week raised no ALERT on this network")
    settings = load_settings()
    fragments = pd.read_parquet(current(settings.published_dir, "topology", NETWORK).file("fragments.parquet"))
    lines = pd.read_parquet(current(settings.published_dir, GRAPH_DATASET, NETWORK).file("lines.parquet"))
    day_segments = alerts.loc[pd.to_datetime(alerts["date"]) == pd.Timestamp(worst["date"]), "segment_id"]
    day_lines = lines[lines["line_id"].isin(fragments.loc[fragments["segment_id"].isin(day_segments), "line_id"])]
    seeds = sorted(set(day_lines["from_node_id"]) | set(day_lines["to_node_id"]))
    snapshot = load_snapshot(current(settings.published_dir, "analytics", NETWORK))
    params = replace(scenario_params("storm_hurricane"), max_nodes=len(seeds) + 100)
    impact = simulate_storm(snapshot.graph, seeds, snapshot.betweenness, params)
    assert (worst["seed_nodes"], worst["affected_assets"], worst["customers_lost"]) == \
        (len(seeds), impact.cascade.total_affected_nodes, impact.customers_lost)
    assert worst["line_km_lost"] == pytest.approx(impact.line_km_lost, abs=1e-3)
    failed = platform.query("select count(*) from analytics.storm_failed_nodes where network_id = ?", [NETWORK])[0][0]
    assert failed == int(days["affected_assets"].sum())


@pytest.mark.slow
def test_dbt_mart_ranks_nodes_by_cascade_risk(platform, tmp_path):
    done = subprocess.run(
        [str(DBT), "build", "--project-dir", str(PROJECT_ROOT / "dbt_project"),
         "--profiles-dir", str(PROJECT_ROOT / "dbt_project"), "--target-path", str(tmp_path / "target"),
         "--log-path", str(tmp_path / "logs"), "--select", "+analytics_node_risk"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "GRID_WAREHOUSE": platform.warehouse.path, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})
    assert done.returncode == 0, done.stdout[-3000:]
    mart = platform.query("select node_id, risk_rank from main.analytics_node_risk where network_id = ? "
                          "order by risk_rank limit 3", [NETWORK])
    top = platform.query("select node_id from analytics.grid_centrality where network_id = ? and in_largest_component "
                         "order by cascade_risk_score desc, node_id limit 3", [NETWORK])
    assert [m[0] for m in mart] == [t[0] for t in top] and [m[1] for m in mart] == [1, 2, 3]
