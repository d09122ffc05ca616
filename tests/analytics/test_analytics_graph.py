"""CSR grid graph: builders on real networks, invariants, tiling, .npz round trip, plain BFS."""

from __future__ import annotations

import warnings
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from analytics_nx_reference import to_networkx
from scipy.sparse.csgraph import connected_components

from grid_platform.analytics import (
    GridGraph,
    graph_from_frames,
    hop_distances,
    matpower_case_path,
    reachable_node_ids,
    tile_graph,
)


def _pandapower_reference_edges(net: Any) -> set[tuple[str, str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pandapower import topology

    mg = topology.create_nxgraph(
        net,
        respect_switches=True,
        include_dclines=False,
        include_tcsc=False,
        include_vsc=False,
        include_line_dc=False,
    )
    return {tuple(sorted((str(a), str(b)))) for a, b in mg.edges() if a != b}


def _edge_set(graph: GridGraph) -> set[tuple[str, str]]:
    edges = graph.edges()
    return {tuple(sorted(pair)) for pair in zip(edges["from_node_id"], edges["to_node_id"])}


def assert_csr_invariants(graph: GridGraph) -> None:
    ids = graph.node_id
    assert (ids[:-1] < ids[1:]).all(), "node ids must be strictly ascending"
    src = graph.entry_source
    assert (src != graph.indices).all(), "no self-loops"
    rows_sorted = np.all((np.diff(graph.indices) > 0) | (np.diff(src) != 0))
    assert rows_sorted, "neighbours sorted (and unique) within each row"
    forward = set(zip(src.tolist(), graph.indices.tolist()))
    assert forward == {(b, a) for a, b in forward}, "every edge stored in both directions"
    lengths = {(a, b): d for a, b, d in zip(src.tolist(), graph.indices.tolist(), graph.length_km.tolist())}
    assert all(lengths[(b, a)] == d for (a, b), d in lengths.items())


@pytest.mark.parametrize("name", ["oberrhein", "schutterwald", "simbench_graph"])
def test_pandapower_graph_matches_create_nxgraph(name: str, request: pytest.FixtureRequest) -> None:
    graph: GridGraph = request.getfixturevalue(name)
    net = request.getfixturevalue(
        {"oberrhein": "oberrhein_net", "schutterwald": "schutterwald_net"}.get(name, "simbench_net")
    )
    assert graph.n_nodes == int(net.bus["in_service"].sum())
    assert _edge_set(graph) == _pandapower_reference_edges(net)
    assert_csr_invariants(graph)


def test_oberrhein_node_attributes(oberrhein: GridGraph, oberrhein_net: Any) -> None:
    types = pd.Series(oberrhein.node_type_names()).value_counts().to_dict()
    # 2 × (110 kV bus + 20 kV busbar); 141 MV/LV stations + 6 MV customers are MV loads.
    assert types == {"TRANSFORMER": 147, "POLE": 28, "SUBSTATION": 4}
    assert oberrhein.downstream_transformers.sum() == len(oberrhein_net.load) == 147
    # data-sources.md §2: lon 7.744–7.938, lat 48.329–48.475 (rounded)
    assert 7.743 <= np.nanmin(oberrhein.lon) and np.nanmax(oberrhein.lon) <= 7.939
    assert 48.328 <= np.nanmin(oberrhein.lat) and np.nanmax(oberrhein.lat) <= 48.476
    assert ((oberrhein.criticality_score > 0) & (oberrhein.criticality_score <= 1)).all()
    lines = oberrhein_net.line
    line_km = lines.loc[lines["in_service"], "length_km"]
    known = oberrhein.edges()["distance_km"].dropna()
    assert len(known) <= len(line_km) and known.sum() <= line_km.sum() + 1e-9
    # transformer edges carry no length and get the §2.1 default of 1.0 km
    assert oberrhein.edges()["distance_km"].isna().sum() == 2


def test_schutterwald_meters_and_stations(schutterwald: GridGraph, schutterwald_net: Any) -> None:
    types = pd.Series(schutterwald.node_type_names()).value_counts().to_dict()
    assert types["TRANSFORMER"] == 2 * len(schutterwald_net.trafo)  # 20 kV and 0.4 kV side of each station
    assert types["METER"] == schutterwald_net.load["bus"].nunique()
    assert schutterwald.downstream_transformers.sum() == len(schutterwald_net.trafo)


def test_matpower_graph_matches_branch_table(activsg2000: GridGraph) -> None:
    from matpowercaseframes import CaseFrames

    case = CaseFrames(str(matpower_case_path("case_ACTIVSg2000")))
    reference = nx.Graph()
    reference.add_nodes_from(str(int(b)) for b in case.bus["BUS_I"])
    live = case.branch[case.branch["BR_STATUS"] > 0]
    reference.add_edges_from((str(int(f)), str(int(t))) for f, t in zip(live["F_BUS"], live["T_BUS"]))
    assert activsg2000.n_nodes == 2000
    assert activsg2000.n_edges == reference.number_of_edges()
    assert _edge_set(activsg2000) == {tuple(sorted(e)) for e in reference.edges()}
    assert np.isnan(activsg2000.distance_km).all() and (activsg2000.length_km == 1.0).all()
    names = dict(zip(activsg2000.node_id, activsg2000.node_name))
    assert names[str(int(case.bus["BUS_I"].iloc[0]))] == case.bus.index[0]
    loads = activsg2000.capacity_kw > 0
    assert (activsg2000.downstream_transformers[loads] >= 1).all()
    assert (activsg2000.downstream_transformers[~loads] == 0).all()
    assert_csr_invariants(activsg2000)


def test_frames_builder_rules() -> None:
    nodes = pd.DataFrame(
        {
            "node_id": ["b", "a", "c", "d"],
            "node_type": ["pole", "SUBSTATION", "METER", "POLE"],
            "capacity_kw": [5, 0, 1, 0],
        }
    )
    edges = pd.DataFrame(
        {
            "from_node_id": ["a", "b", "a", "c", "c"],
            "to_node_id": ["b", "a", "c", "c", "d"],
            "distance_km": [2.0, 0.5, np.nan, 1.0, 3.0],
        }
    )
    graph = graph_from_frames(nodes, edges)
    assert graph.node_id.tolist() == ["a", "b", "c", "d"]
    assert graph.node_type_names().tolist() == ["SUBSTATION", "POLE", "METER", "POLE"]
    assert graph.capacity_kw.tolist() == [0, 5, 1, 0]
    table = graph.edges().set_index(["from_node_id", "to_node_id"])["distance_km"]
    assert table[("a", "b")] == 0.5  # parallel a-b edges: the shorter one is kept
    assert np.isnan(table[("a", "c")])  # unknown length ...
    assert graph.n_edges == 3  # ... the c-c self-loop is dropped
    a_c = graph.indptr[0] + 1  # a's second neighbour is c
    assert graph.indices[a_c] == 2 and graph.length_km[a_c] == 1.0  # ... and defaults to 1.0 km


@pytest.mark.parametrize(
    ("nodes", "edges", "message"),
    [
        ({"node_id": ["a", "a"]}, {"from_node_id": [], "to_node_id": []}, "duplicate node ids"),
        (
            {"node_id": ["a"], "node_type": ["TOWER"]},
            {"from_node_id": [], "to_node_id": []},
            "unknown node_type",
        ),
        ({"node_id": ["a"]}, {"from_node_id": ["a"], "to_node_id": ["zz"]}, "reference unknown nodes"),
        (
            {"node_id": ["a", "b"]},
            {"from_node_id": ["a"], "to_node_id": ["b"], "distance_km": [-1.0]},
            "negative",
        ),
    ],
)
def test_frames_builder_rejects_bad_input(nodes: dict, edges: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        graph_from_frames(pd.DataFrame(nodes), pd.DataFrame(edges))


def test_index_of_names_unknown_ids(oberrhein: GridGraph) -> None:
    assert oberrhein.node_id[oberrhein.index_of(["5", "39"])].tolist() == ["5", "39"]
    with pytest.raises(KeyError, match="not in the graph"):
        oberrhein.index_of(["5", "no-such-bus"])


def test_tile_graph_links_copies(activsg2000: GridGraph) -> None:
    tiled = tile_graph(activsg2000, 3, links_per_join=20)
    assert tiled.n_nodes == 3 * 2000
    assert tiled.n_edges == 3 * activsg2000.n_edges + 2 * 20
    assert tiled.node_id[0].startswith("0:") and tiled.node_id[-1].startswith("2:")
    assert connected_components(tiled.adjacency, directed=False)[0] == 1
    assert_csr_invariants(tiled)
    # each copy keeps the base topology
    second = tiled.index_of(np.char.add("1:", activsg2000.node_id))
    inner = tiled.edges()
    inner = inner[inner["from_node_id"].str.startswith("1:") & inner["to_node_id"].str.startswith("1:")]
    assert len(inner) == activsg2000.n_edges and len(second) == 2000


def test_npz_round_trip(tmp_path: Any, oberrhein: GridGraph) -> None:
    path = oberrhein.save(tmp_path / "graphs" / "oberrhein.npz")
    loaded = GridGraph.load(path)
    for name in (
        "node_id", "node_name", "node_type", "lat", "lon", "capacity_kw", "voltage_kv",
        "criticality_score", "downstream_transformers", "indptr", "indices", "distance_km",
    ):  # fmt: skip
        np.testing.assert_array_equal(getattr(loaded, name), getattr(oberrhein, name), err_msg=name)
    assert loaded.meta == {"source": "mv_oberrhein"}
    assert list(tmp_path.joinpath("graphs").iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize("name", ["schutterwald", "simbench_graph"])
def test_bfs_matches_networkx(name: str, request: pytest.FixtureRequest) -> None:
    graph: GridGraph = request.getfixturevalue(name)
    g = to_networkx(graph)
    for source in graph.node_id[:: max(1, graph.n_nodes // 7)].tolist():
        hops = hop_distances(graph, source)
        expected = nx.single_source_shortest_path_length(g, source)
        reached = hops >= 0
        assert dict(zip(graph.node_id[reached].tolist(), hops[reached].tolist())) == expected
        within = nx.single_source_shortest_path_length(g, source, cutoff=3)
        assert set(reachable_node_ids(graph, source, max_hops=3).tolist()) == set(within)
