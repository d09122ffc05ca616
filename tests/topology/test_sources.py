"""Source adapters on the real pandapower and SimBench networks."""

from __future__ import annotations

import pandapower.networks as pn
import pytest
import shapely

from grid_platform.topology import MissingGeometryError, from_pandapower
from grid_platform.topology.pandapower_source import OFFENBURG_AREA


def test_mv_oberrhein_routes_and_conductors(mv_net):
    lines = mv_net.lines
    assert len(lines) == 181 and len(mv_net.nodes) == 320
    assert (lines["geometry_source"] == "route").all()
    counts = lines["conductor_type"].value_counts().to_dict()
    assert counts == {"underground_cable": 171, "overhead_bare": 10}
    assert set(lines["conductor_type_source"]) == {"pandapower.type"}
    # 2 HV/MV + 141 MV/LV transformers, each its own substation.
    assert len(mv_net.transformers) == 143 and len(mv_net.substations) == 143
    lon0, lat0, lon1, lat1 = shapely.total_bounds(lines.geometry.to_numpy())
    assert 7.74 < lon0 < lon1 < 7.94 and 48.32 < lat0 < lat1 < 48.48


def test_lv_schutterwald(lv_net):
    assert len(lv_net.lines) == 3000 and (lv_net.lines["geometry_source"] == "route").all()
    assert set(lv_net.lines["conductor_type"]) == {"underground_cable"}
    assert len(lv_net.substations) == 14
    # Open line-end switches are carried to the line ends.
    assert (~lv_net.lines["from_closed"] | ~lv_net.lines["to_closed"]).sum() > 0


def test_simbench_straight_lines(simbench_net):
    lines = simbench_net.lines
    assert len(lines) == 99 and (lines["geometry_source"] == "straight").all()
    assert simbench_net.network_id == "simbench_1_mv_rural_0_sw"
    assert list(simbench_net.substations["name"]) == ["HV1_MV1.101_Substation"]
    # Straight lines run exactly between their bus points.
    pos = dict(zip(simbench_net.nodes["node_id"], simbench_net.nodes.geometry))
    first = lines.iloc[0]
    assert list(first.geometry.coords) == [pos[first["from_node"]].coords[0], pos[first["to_node"]].coords[0]]
    assert len(simbench_net.switches) == 2  # the bus-bus switches; line switches sit on the lines


def test_line_without_route_or_bus_position_is_named():
    net = pn.mv_oberrhein()
    victim = net.line.index[5]
    net.line.loc[victim, "geo"] = None
    net.bus.loc[net.line.loc[victim, "from_bus"], "geo"] = None
    with pytest.raises(MissingGeometryError, match=rf"line {victim} \('Line {victim}'\)"):
        from_pandapower(net, "broken", area_bbox=OFFENBURG_AREA)


def test_line_without_route_falls_back_to_straight():
    net = pn.mv_oberrhein()
    net.line.loc[net.line.index[:3], "geo"] = None
    n = from_pandapower(net, "partly", area_bbox=OFFENBURG_AREA)
    assert n.lines["geometry_source"].value_counts().to_dict() == {"route": 178, "straight": 3}


