"""Checks, preview, the tiled large network, and the CGMES fetch script."""

from __future__ import annotations

import importlib.util

import geopandas as gpd
import numpy as np
import shapely

from grid_platform.settings import PROJECT_ROOT
from grid_platform.topology import (
    build_topology,
    check_geometries,
    check_inside_area,
    check_lines_join_nodes,
    copies_for,
    render_preview,
    run_checks,
    tiled_network,
)


def test_checks_pass_on_real_networks(mv_net, mv_build, lv_net, lv_build):
    for net, build in ((mv_net, mv_build), (lv_net, lv_build)):
        results = {r.name: r for r in run_checks(net, build)}
        assert all(r.passed for r in results.values()), results
    assert results["connected_components"].metadata["components"] == 15


def test_checks_name_the_offenders(mv_net, mv_build):
    lines = mv_net.lines.copy()
    lines.loc[lines.index[0], "to_node"] = "bus:does-not-exist"
    broken = type(mv_net)(**{**mv_net.__dict__, "lines": gpd.GeoDataFrame(lines, crs=mv_net.lines.crs)})
    r = check_lines_join_nodes(broken)
    assert not r.passed and r.failures == [lines["line_id"].iloc[0]]

    small = type(mv_net)(**{**mv_net.__dict__, "area_bbox": (7.70, 48.30, 7.85, 48.50)})
    r = check_inside_area(small)
    assert not r.passed and r.metadata["failing"] > 0 and r.failures[0].startswith("line:")

    shapes = mv_build.shapes.copy()
    shapes.loc[0, "geom"] = shapely.LineString([(0, 0), (0, 0)])
    r = check_geometries(type(mv_build)(**{**mv_build.__dict__, "shapes": shapes}))
    assert not r.passed and r.failures == [f"shape:{shapes['segment_id'].iloc[0]}"]


def test_preview_png(tmp_path, mv_build):
    png = render_preview(mv_build, tmp_path / "mv.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "mv.png").read_bytes() == png
    assert len(png) > 20_000


def test_tiled_network_copies_and_connects(mv_net, lv_net):
    bases = [mv_net, lv_net]
    net = tiled_network(bases, 4, network_id="tiled4")
    assert len(net.lines) == 4 * (181 + 3000) + 4  # plus 4 tie cables on a 2 x 2 grid
    assert net.lines["line_id"].is_unique and net.nodes["node_id"].is_unique
    assert copies_for(100_000, bases) == 32
    build = build_topology(net)
    assert build.quality["segments"] >= 4 * (181 + 2925)  # at least one per distinct line name and copy
    assert all(r.passed for r in run_checks(net, build))
    # The medium-voltage copies are tied together: one component more per LV island only.
    single = (
        build_topology(mv_net).quality["graph_components"]
        + build_topology(lv_net).quality["graph_components"]
    )
    assert build.quality["graph_components"] < 4 * single
    ties = net.lines[net.lines["line_name_source"] == "tiling_tie"]
    assert (ties["voltage_kv"] == 20.0).all()
    # Copies are translated, not overlapping: each copy's lines sit in their own extent.
    first = net.lines[net.lines["line_id"].str.startswith("c0/")]
    last = net.lines[net.lines["line_id"].str.startswith("c3/")]
    b0, b3 = shapely.total_bounds(first.geometry.to_numpy()), shapely.total_bounds(last.geometry.to_numpy())
    assert b3[0] > b0[2] - 1 and b3[1] > b0[3] - 1


def test_fetch_script_is_idempotent_without_network(tmp_path, cgmes_dir, monkeypatch):
    spec = importlib.util.spec_from_file_location("fetch_cgmes", PROJECT_ROOT / "scripts" / "fetch_cgmes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.is_complete(cgmes_dir)
    monkeypatch.setattr(
        mod.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no pip"))
    )
    assert mod.fetch(cgmes_dir) == cgmes_dir  # complete: nothing downloaded
    assert mod.main(["--check", "--target", str(cgmes_dir)]) == 0
    assert mod.main(["--check", "--target", str(tmp_path / "empty")]) == 1

    def offline(*a, **k):
        return type(
            "R", (), {"returncode": 1, "stdout": "", "stderr": "ERROR: No matching distribution found"}
        )()

    monkeypatch.setattr(mod.subprocess, "run", offline)
    assert mod.main(["--target", str(tmp_path / "offline")]) == 2
    assert not np.any([p.suffix == ".zip" for p in (tmp_path / "offline").glob("*")])
