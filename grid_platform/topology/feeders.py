"""Feeder, parent substation and operational unit of every line and substation.

Sources carry none of these attributes, so they are derived reproducibly from the graph:

* Closed node-to-node switches are contracted (their nodes are one electrical node); open
  ones separate. A line whose end switch is open (or that is out of service) is cut from
  the node at that end, so it is reached, if at all, from its other end.
* The busbars feeding each voltage level are the low-voltage nodes of closed transformers.
  One breadth-first search from all busbars at once (a virtual root joined to every
  busbar) labels each reachable node with its nearest busbar (``parent_substation_name``
  = that transformer's substation) and with the first line leaving the busbar on the way
  (``feeder_id`` = that line's name, else its id). Transformers are not traversed, so every
  voltage level is fed by its own transformers.
* A line takes the labels of its end nearer to the busbar (ties: the smaller feeder id);
  a line leaving a busbar is its own feeder. Lines no busbar reaches keep nulls
  (``feeder_source = 'unreached'``).
* ``operational_unit`` of a substation = the substation feeding its high-voltage node
  (one level up), else the substation itself; lines take the unit of their parent
  substation. So all networks hanging off one upstream substation form one unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components

from .model import Network, sorted_factorize

PROVENANCE = {
    "feeder_id": "name (else id) of the first line leaving the feeding transformer's low-voltage "
    "busbar on the BFS path from that busbar (closed switches contracted, open ones cut)",
    "parent_substation_name": "substation of the nearest feeding transformer busbar (multi-source BFS)",
    "operational_unit": "substation feeding the parent substation's high-voltage node, else the "
    "parent substation itself",
}


@dataclass
class FeederAttributes:
    lines: pd.DataFrame  # index aligned with network.lines: feeder_id, parent_substation_name,
    # operational_unit, feeder_source
    substations: pd.DataFrame  # index aligned with network.substations: line_name, feeder_id,
    # parent_substation_name, operational_unit
    n_components: int  # connected components of the graph (lines + closed switches + transformers)


def _climb(parent_of: np.ndarray, step: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Follow ``parent_of`` to its fixed points by doubling; with ``step`` also sum steps (depth)."""
    jump = parent_of.copy()
    dist = step.copy() if step is not None else None
    while True:
        nxt = jump[jump]
        if dist is not None:
            dist = dist + dist[jump]
        if np.array_equal(nxt, jump):
            return jump, dist
        jump = nxt


def derive_feeders(net: Network) -> FeederAttributes:
    nodes = pd.Index(net.nodes["node_id"].to_numpy())
    n = len(nodes)
    lines = net.lines
    li_from = nodes.get_indexer(lines["from_node"])
    li_to = nodes.get_indexer(lines["to_node"])

    # Electrical nodes: contract closed switches.
    sw = net.switches[net.switches["closed"].astype(bool)]
    sa, sb = nodes.get_indexer(sw["node_a"]), nodes.get_indexer(sw["node_b"])
    ok = (sa >= 0) & (sb >= 0)
    g = sp.coo_matrix((np.ones(ok.sum()), (sa[ok], sb[ok])), shape=(n, n)).tocsr()
    _, enode = connected_components(g, directed=False)
    n_e = int(enode.max()) + 1 if n else 0

    # Line ends: an open end (or an unknown node) becomes a fresh dangling node.
    in_service = lines["in_service"].to_numpy(dtype=bool)
    fc = lines["from_closed"].to_numpy(dtype=bool) & in_service & (li_from >= 0)
    tc = lines["to_closed"].to_numpy(dtype=bool) & in_service & (li_to >= 0)
    m = len(lines)
    a = np.where(fc, enode[np.maximum(li_from, 0)], n_e + np.arange(m))
    b = np.where(tc, enode[np.maximum(li_to, 0)], n_e + m + np.arange(m))
    root = n_e + 2 * m
    size = root + 1

    # Feeding busbars: low-voltage nodes of closed transformers.
    tr = net.transformers[net.transformers["closed"].astype(bool)]
    t_lv = nodes.get_indexer(tr["lv_node"])
    t_hv = nodes.get_indexer(tr["hv_node"])
    sub_name = dict(zip(net.substations["substation_id"], net.substations["name"]))
    busbar_sub: dict[int, str] = {}
    for lv, sid in zip(t_lv, tr["substation_id"]):
        if lv >= 0:
            name = sub_name.get(sid, sid)
            e = int(enode[lv])
            busbar_sub[e] = min(busbar_sub.get(e, name), name)
    sources = np.array(sorted(busbar_sub), dtype=np.int64)

    rows = np.concatenate([a, b, np.full(len(sources), root)])
    cols = np.concatenate([b, a, sources])
    graph = sp.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(size, size))
    _, pred = breadth_first_order(graph, root, directed=False, return_predecessors=True)

    # Depth, busbar and first hop of every node by pointer jumping over the BFS tree
    # (log(depth) vectorised steps instead of a Python walk over millions of nodes).
    ids = np.arange(size)
    has_parent = pred >= 0
    parent_of = np.where(has_parent, pred, ids)
    jump, depth = _climb(parent_of, has_parent.astype(np.int64))
    depth = np.where(jump == root, depth, -1)
    is_busbar = depth == 1
    source, _ = _climb(np.where(depth >= 2, parent_of, ids))  # depth-1 ancestor
    hop1, _ = _climb(np.where(depth >= 3, parent_of, ids))  # depth-2 ancestor

    # Labels compared as ranks of the sorted label strings.
    line_label = lines["line_name"].where(lines["line_name"].notna(), lines["line_id"]).to_numpy(dtype=object)
    lcode, labels = sorted_factorize(line_label)
    none = len(labels)
    label_of = np.append(np.asarray(labels, dtype=object), None)

    # Feeder of a node = the lowest-label line joining its busbar and its first hop.
    hop_code = np.full(size, none, dtype=np.int64)
    for x, y in ((a, b), (b, a)):
        out = is_busbar[x] & (depth[y] == 2) & (parent_of[y] == x)
        np.minimum.at(hop_code, y[out], lcode[out])
    node_code = np.where(depth >= 2, hop_code[hop1], none)

    # Line labels: own label when leaving a busbar, else the end nearer to a busbar.
    far = np.iinfo(np.int64).max
    da_eff = np.where(depth[a] >= 1, depth[a], far)
    db_eff = np.where(depth[b] >= 1, depth[b], far)
    pick_b = (db_eff < da_eff) | ((db_eff == da_eff) & (node_code[b] < node_code[a]))
    near = np.where(pick_b, b, a)
    line_reached = np.minimum(da_eff, db_eff) < far
    leaves_busbar = is_busbar[a] | is_busbar[b]
    code = np.where(leaves_busbar, lcode, node_code[near])
    feeder = label_of[np.where(line_reached, code, none)]
    busbar_name = np.full(size, None, dtype=object)
    busbar_name[sources] = [busbar_sub[int(e)] for e in sources]
    parent = np.where(line_reached, busbar_name[source[near]], None)
    node_feeder = label_of[node_code]

    # Operational unit: substation feeding a substation's high-voltage node, else itself.
    sub_ids = net.substations["substation_id"].tolist()
    hv_of_sub: dict[str, int] = {}
    for hv, sid, kv in sorted(zip(t_hv, tr["substation_id"], tr["hv_kv"]), key=lambda r: (-r[2], r[1], r[0])):
        if hv >= 0:
            hv_of_sub.setdefault(sid, int(enode[hv]))
    # The line reaching each substation's high-voltage node (its BFS tree edge).
    wanted = {e: int(pred[e]) for e in hv_of_sub.values() if depth[e] >= 2}
    pair = np.minimum(a, b) * size + np.maximum(a, b)
    want_keys = np.array([min(e, p) * size + max(e, p) for e, p in wanted.items()], dtype=np.int64)
    up_line_of: dict[int, str] = {}
    for pos in np.flatnonzero(np.isin(pair, want_keys)).tolist():
        k = int(pair[pos])
        if k not in up_line_of or line_label[pos] < up_line_of[k]:
            up_line_of[k] = line_label[pos]
    sub_rows = []
    unit_of_name: dict[str, str] = {}
    for sid in sub_ids:
        name = sub_name[sid]
        e = hv_of_sub.get(sid)
        if e is not None and depth[e] >= 1:
            up = busbar_sub[int(source[e])]
            up_line = None
            if e in wanted:
                p = wanted[e]
                up_line = up_line_of.get(min(e, p) * size + max(e, p))
            sub_rows.append((up_line, node_feeder[e], up))
            unit_of_name.setdefault(name, up)
        else:
            sub_rows.append((None, None, None))
            unit_of_name.setdefault(name, name)
    units = np.array([unit_of_name.get(p) if p is not None else None for p in parent], dtype=object)
    line_attrs = pd.DataFrame(
        {
            "feeder_id": feeder,
            "parent_substation_name": parent,
            "operational_unit": units,
            "feeder_source": np.where(line_reached, "bfs", "unreached"),
        },
        index=lines.index,
    )
    sub_attrs = pd.DataFrame(
        {
            "line_name": [r[0] for r in sub_rows],
            "feeder_id": [r[1] for r in sub_rows],
            "parent_substation_name": [r[2] for r in sub_rows],
            "operational_unit": [unit_of_name[sub_name[s]] for s in sub_ids],
        },
        index=net.substations.index,
    )

    # Components of the operated graph (switch states respected), transformers included.
    ok_t = (t_hv >= 0) & (t_lv >= 0)
    crow = np.concatenate([a, enode[t_hv[ok_t]]])
    ccol = np.concatenate([b, enode[t_lv[ok_t]]])
    cg = sp.csr_matrix((np.ones(len(crow), dtype=np.int8), (crow, ccol)), shape=(root, root))
    _, comp = connected_components(cg, directed=False)
    n_comp = len(np.unique(comp[np.concatenate([enode, a, b])]))
    return FeederAttributes(lines=line_attrs, substations=sub_attrs, n_components=int(n_comp))
