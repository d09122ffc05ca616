"""Derived feeder, parent substation and operational unit (BFS with switches respected)."""

from __future__ import annotations

import numpy as np
import pandapower.networks as pn

from grid_platform.topology.feeders import derive_feeders
from grid_platform.topology.pandapower_source import OFFENBURG_AREA, from_pandapower


def test_lv_parent_substation_matches_source_zones(lv_net):
    """lv_schutterwald labels every bus with its feeding transformer (bus.zone); the BFS
    must find the same transformer for every line it reaches."""
    net = pn.lv_schutterwald()
    f = derive_feeders(lv_net)
    zone_from = net.bus["zone"].reindex(net.line["from_bus"]).to_numpy()
    zone_to = net.bus["zone"].reindex(net.line["to_bus"]).to_numpy()
    parent = f.lines["parent_substation_name"].to_numpy()
    reached = (f.lines["feeder_source"] == "bfs").to_numpy()
    assert reached.sum() == 2999
    assert np.all((parent[reached] == zone_from[reached]) | (parent[reached] == zone_to[reached]))
    # The one line open at both ends is not fed: nulls, recorded as unreached.
    lone = lv_net.lines[~reached]
    assert not lone["from_closed"].item() and not lone["to_closed"].item()
    assert f.lines.loc[~reached, "feeder_id"].isna().all()
    assert f.n_components == 15  # 14 transformer areas + the isolated line


def test_mv_feeders_leave_the_hv_mv_busbars(mv_net):
    f = derive_feeders(mv_net)
    assert set(f.lines["parent_substation_name"]) == {"HV/MV Transformer 0", "HV/MV Transformer 1"}
    busbars = set(mv_net.transformers.loc[mv_net.transformers["hv_kv"] == 110.0, "lv_node"])
    lines = mv_net.lines
    leaving = lines["from_node"].isin(busbars) | lines["to_node"].isin(busbars)
    # A line leaving the busbar is its own feeder; every feeder is such a line.
    assert (f.lines.loc[leaving, "feeder_id"] == lines.loc[leaving, "line_name"]).all()
    assert set(f.lines["feeder_id"]) == set(lines.loc[leaving, "line_name"])
    # MV/LV substations sit on a feeder of an HV/MV substation; units are the HV/MV stations.
    subs = f.substations
    mvlv = mv_net.substations["name"].str.startswith("MV/LV").to_numpy()
    assert subs.loc[mvlv, "parent_substation_name"].notna().all()
    assert subs.loc[mvlv, "line_name"].notna().all()
    assert set(subs["operational_unit"]) == {"HV/MV Transformer 0", "HV/MV Transformer 1"}


def test_open_switch_moves_the_boundary():
    """Opening a line switch cuts the line from that bus: what lies behind is fed from elsewhere
    or not at all, never through the open switch."""
    net = pn.mv_oberrhein(include_substations=True)
    base = derive_feeders(from_pandapower(net, "a", area_bbox=OFFENBURG_AREA)).lines["feeder_id"]
    closed = net.switch[(net.switch["et"] == "l") & net.switch["closed"]]
    net.switch.loc[closed.index, "closed"] = False  # open every line switch
    cut = derive_feeders(from_pandapower(net, "b", area_bbox=OFFENBURG_AREA))
    assert base.notna().all()
    assert (cut.lines["feeder_source"] == "unreached").sum() > 0


def test_derivation_is_deterministic(mv_net):
    a, b = derive_feeders(mv_net), derive_feeders(mv_net)
    assert a.lines.equals(b.lines) and a.substations.equals(b.substations)
