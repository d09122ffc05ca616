"""Compact, undirected grid graph in CSR form (grid-analytics.md §1, §7).

Nodes are kept in ascending ``node_id`` order: the integer index of a node *is* its rank
among the string ids. CSR neighbour lists are sorted by index, so walking a row visits
neighbours in ascending ``node_id`` order, which the cascade rule (§2.2) requires.

Every edge is stored in both directions. Parallel edges are collapsed to the shortest one
(the strongest coupling; networkx's ``Graph`` keeps one edge per pair as well) and
self-loops are dropped. ``distance_km`` keeps NaN where the source gives no length
(transformers, switches, MATPOWER branches); :attr:`GridGraph.length_km` applies the
spec's 1.0 km default.

The graph is built once and saved as a single ``.npz`` (metadata as an embedded JSON
string), so analytics never rebuild it per request.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

NODE_TYPES: tuple[str, ...] = ("SUBSTATION", "TRANSFORMER", "POLE", "METER")
NODE_TYPE_CODE: dict[str, int] = {name: code for code, name in enumerate(NODE_TYPES)}

# §2.1: "distance_km defaults to 1.0 when missing".
DEFAULT_DISTANCE_KM = 1.0

# Criticality for sources that carry none: half node type, half capacity rank (0-1].
TYPE_CRITICALITY: dict[str, float] = {"SUBSTATION": 1.0, "TRANSFORMER": 0.6, "POLE": 0.3, "METER": 0.1}

NODE_ARRAYS = (
    "node_id",
    "node_name",
    "node_type",
    "lat",
    "lon",
    "capacity_kw",
    "voltage_kv",
    "criticality_score",
    "downstream_transformers",
)
_FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class GridGraph:
    node_id: np.ndarray  # str, strictly ascending
    node_name: np.ndarray  # str
    node_type: np.ndarray  # int8 code into NODE_TYPES
    lat: np.ndarray
    lon: np.ndarray
    capacity_kw: np.ndarray
    voltage_kv: np.ndarray
    criticality_score: np.ndarray
    downstream_transformers: np.ndarray  # int64
    indptr: np.ndarray  # int64, n + 1
    indices: np.ndarray  # int32, both directions, sorted within each row
    distance_km: np.ndarray  # float64 per CSR entry, NaN = length unknown
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"GridGraph(n_nodes={self.n_nodes}, n_edges={self.n_edges}, meta={self.meta})"

    @property
    def n_nodes(self) -> int:
        return len(self.node_id)

    @property
    def n_edges(self) -> int:
        """Undirected edges (each stored twice in the CSR)."""
        return len(self.indices) // 2

    @cached_property
    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    @cached_property
    def length_km(self) -> np.ndarray:
        """Per-entry length with the §2.1 default applied to unknown lengths."""
        return np.where(np.isnan(self.distance_km), DEFAULT_DISTANCE_KM, self.distance_km)

    @cached_property
    def entry_source(self) -> np.ndarray:
        """Row (tail node) of every CSR entry."""
        return np.repeat(np.arange(self.n_nodes, dtype=np.int32), self.degree)

    @cached_property
    def adjacency(self) -> sp.csr_array:
        """Length-weighted adjacency for scipy.sparse.csgraph (int32 index arrays)."""
        return sp.csr_array(
            (self.length_km, self.indices, self.indptr.astype(np.int32)), shape=(self.n_nodes, self.n_nodes)
        )

    @cached_property
    def node_id_arrow(self) -> pa.StringArray:
        """node_id as an Arrow array: result tables ``take`` from it instead of building Python strings."""
        return pa.array(self.node_id, type=pa.string())

    @cached_property
    def node_name_arrow(self) -> pa.StringArray:
        return pa.array(self.node_name, type=pa.string())

    def take_ids(self, index: np.ndarray, *, names: bool = False) -> pd.arrays.ArrowStringArray:
        """node_id (or node_name) of ``index`` as a pandas Arrow string array; index -1 gives null."""
        source = self.node_name_arrow if names else self.node_id_arrow
        index = np.asarray(index, dtype=np.int64)
        return pd.arrays.ArrowStringArray(source.take(pa.array(index, mask=index < 0)))

    def node_type_categorical(self, index: np.ndarray) -> pd.Categorical:
        return pd.Categorical.from_codes(self.node_type[index], categories=list(NODE_TYPES))

    def node_type_names(self, index: np.ndarray | None = None) -> np.ndarray:
        codes = self.node_type if index is None else self.node_type[index]
        return np.asarray(NODE_TYPES, dtype=object)[codes]

    def index_of(self, node_ids: Any) -> np.ndarray:
        """Integer indices of the given node ids; raises KeyError naming unknown ids."""
        ids = np.atleast_1d(np.asarray(node_ids, dtype=str))
        pos = np.searchsorted(self.node_id, ids)
        pos_clipped = np.minimum(pos, self.n_nodes - 1)
        found = (pos < self.n_nodes) & (self.node_id[pos_clipped] == ids)
        if not found.all():
            missing = ids[~found][:5].tolist()
            raise KeyError(f"{int((~found).sum())} node id(s) not in the graph, e.g. {missing}")
        return pos.astype(np.int64)

    def edges(self) -> pd.DataFrame:
        """One row per undirected edge (from < to by node order)."""
        src = self.entry_source
        keep = src < self.indices
        return pd.DataFrame(
            {
                "from_node_id": self.node_id[src[keep]],
                "to_node_id": self.node_id[self.indices[keep]],
                "distance_km": self.distance_km[keep],
            }
        )

    def nodes(self) -> pd.DataFrame:
        frame = pd.DataFrame({name: getattr(self, name) for name in NODE_ARRAYS})
        frame["node_type"] = self.node_type_names()
        return frame

    # ---- persistence -------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` atomically (temp file + rename), byte-identical for an identical graph."""
        path = Path(path)
        meta = {
            "format_version": _FORMAT_VERSION,
            "n_nodes": self.n_nodes,
            "n_edges": self.n_edges,
            **self.meta,
        }
        arrays = {name: getattr(self, name) for name in NODE_ARRAYS}
        arrays.update(indptr=self.indptr, indices=self.indices, distance_km=self.distance_km)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            # np.savez stamps each member with the current time; fixed stamps make the same graph
            # the same bytes, so republishing an unchanged graph is a no-op.
            with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
                for name, array in arrays.items():
                    member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                    with archive.open(member, "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> GridGraph:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta_json"]))
            if meta.get("format_version") != _FORMAT_VERSION:
                raise ValueError(f"{path}: unsupported graph format {meta.get('format_version')!r}")
            arrays = {name: data[name] for name in (*NODE_ARRAYS, "indptr", "indices", "distance_km")}
        for key in ("format_version", "n_nodes", "n_edges"):
            meta.pop(key)
        return cls(**arrays, meta=meta)


# ---- assembly -----------------------------------------------------------------------------


def derive_criticality(node_type: np.ndarray, capacity_kw: np.ndarray) -> np.ndarray:
    """0.5 × type weight + 0.5 × capacity percentile rank, for sources without a criticality."""
    type_weight = np.asarray([TYPE_CRITICALITY[name] for name in NODE_TYPES])[node_type]
    rank = (
        pd.Series(capacity_kw).rank(pct=True, method="average").to_numpy()
        if len(capacity_kw)
        else capacity_kw
    )
    return 0.5 * type_weight + 0.5 * rank


def assemble_graph(
    nodes: dict[str, np.ndarray], u: np.ndarray, v: np.ndarray, distance_km: np.ndarray, meta: dict[str, Any]
) -> GridGraph:
    """Build a :class:`GridGraph` from node arrays (any order) and edge endpoint indices into them.

    ``nodes`` holds every name in :data:`NODE_ARRAYS`; ``node_type`` as int8 codes.
    """
    node_id = np.asarray(nodes["node_id"]).astype(str)
    n = len(node_id)
    if n and not (node_id[:-1] < node_id[1:]).all():
        perm = np.argsort(node_id, kind="stable")
        sorted_ids = node_id[perm]
        if (sorted_ids[:-1] == sorted_ids[1:]).any():
            dup = sorted_ids[:-1][sorted_ids[:-1] == sorted_ids[1:]][:5].tolist()
            raise ValueError(f"duplicate node ids, e.g. {dup}")
        rank = np.empty(n, dtype=np.int64)
        rank[perm] = np.arange(n)
        u, v = rank[u], rank[v]
        nodes = {name: np.asarray(values)[perm] for name, values in nodes.items()}
        node_id = sorted_ids
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    d = np.asarray(distance_km, dtype=np.float64)
    if (d < 0).any():
        raise ValueError("negative distance_km in edges")
    loop = u == v
    u, v, d = u[~loop], v[~loop], d[~loop]

    rows = np.concatenate([u, v])
    cols = np.concatenate([v, u])
    dist = np.concatenate([d, d])
    effective = np.where(np.isnan(dist), DEFAULT_DISTANCE_KM, dist)
    order = np.lexsort((effective, cols, rows))
    rows, cols, dist = rows[order], cols[order], dist[order]
    # Keep the shortest of parallel edges: the first entry of each (row, col) run.
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    rows, cols, dist = rows[first], cols[first], dist[first]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])

    return GridGraph(
        node_id=node_id,
        node_name=np.asarray(nodes["node_name"]).astype(str),
        node_type=np.asarray(nodes["node_type"], dtype=np.int8),
        lat=np.asarray(nodes["lat"], dtype=np.float64),
        lon=np.asarray(nodes["lon"], dtype=np.float64),
        capacity_kw=np.asarray(nodes["capacity_kw"], dtype=np.float64),
        voltage_kv=np.asarray(nodes["voltage_kv"], dtype=np.float64),
        criticality_score=np.asarray(nodes["criticality_score"], dtype=np.float64),
        downstream_transformers=np.asarray(nodes["downstream_transformers"], dtype=np.int64),
        indptr=indptr,
        indices=cols.astype(np.int32),
        distance_km=dist,
        meta=dict(meta),
    )


def graph_from_frames(nodes: pd.DataFrame, edges: pd.DataFrame, *, source: str = "frames") -> GridGraph:
    """Graph from generic node / edge tables (§1 field names).

    ``nodes`` needs ``node_id``; optional ``node_type`` (default POLE), ``node_name``,
    ``lat``, ``lon``, ``voltage_kv`` (NaN), ``capacity_kw`` (0), ``downstream_transformers`` (0)
    and ``criticality_score`` (derived by :func:`derive_criticality` when absent).
    ``edges`` needs ``from_node_id`` and ``to_node_id``; ``distance_km`` is optional (NaN).
    """
    if "node_id" not in nodes:
        raise ValueError("nodes table needs a node_id column")
    for column in ("from_node_id", "to_node_id"):
        if column not in edges:
            raise ValueError(f"edges table needs a {column} column")
    n = len(nodes)
    node_id = nodes["node_id"].astype(str).to_numpy()
    type_names = (
        nodes["node_type"].astype(str).str.upper() if "node_type" in nodes else pd.Series(["POLE"] * n)
    )
    unknown = sorted(set(type_names) - set(NODE_TYPES))
    if unknown:
        raise ValueError(f"unknown node_type values {unknown}; expected one of {NODE_TYPES}")
    node_type = type_names.map(NODE_TYPE_CODE).to_numpy(dtype=np.int8)

    def column(name: str, default: float) -> np.ndarray:
        if name not in nodes:
            return np.full(n, default, dtype=np.float64)
        return pd.to_numeric(nodes[name], errors="raise").fillna(default).to_numpy(dtype=np.float64)

    capacity = column("capacity_kw", 0.0)
    if "criticality_score" in nodes:
        criticality = column("criticality_score", 0.0)
    else:
        criticality = derive_criticality(node_type, capacity)
    arrays = {
        "node_id": node_id,
        "node_name": nodes["node_name"].fillna(nodes["node_id"]).astype(str).to_numpy()
        if "node_name" in nodes
        else node_id,
        "node_type": node_type,
        "lat": column("lat", np.nan),
        "lon": column("lon", np.nan),
        "capacity_kw": capacity,
        "voltage_kv": column("voltage_kv", np.nan),
        "criticality_score": criticality,
        "downstream_transformers": column("downstream_transformers", 0.0).astype(np.int64),
    }
    index = pd.Index(node_id)
    if not index.is_unique:
        raise ValueError(f"duplicate node ids, e.g. {index[index.duplicated()][:5].tolist()}")
    u = index.get_indexer(edges["from_node_id"].astype(str))
    v = index.get_indexer(edges["to_node_id"].astype(str))
    bad = (u < 0) | (v < 0)
    if bad.any():
        sample = edges.loc[bad, ["from_node_id", "to_node_id"]].head(3).to_dict("records")
        raise ValueError(f"{int(bad.sum())} edge(s) reference unknown nodes, e.g. {sample}")
    distance = (
        pd.to_numeric(edges["distance_km"], errors="raise").to_numpy(dtype=np.float64)
        if "distance_km" in edges
        else np.full(len(edges), np.nan)
    )
    return assemble_graph(arrays, u, v, distance, {"source": source})


def tile_graph(base: GridGraph, copies: int, links_per_join: int = 20) -> GridGraph:
    """Chain ``copies`` copies of ``base``: copy c and c+1 are joined by ``links_per_join`` edges.

    Link k joins the node at base index ``k·n // links_per_join`` in both copies (length
    unknown). Node ids get a zero-padded copy prefix ``"07:"``, which keeps them sorted.
    14 copies of ACTIVSg70k give §7's ``act70k_x14``: 980,000 nodes and 1,166,712 edges.
    """
    if copies < 1:
        raise ValueError("copies must be >= 1")
    n = base.n_nodes
    width = len(str(copies - 1))
    prefixes = [f"{c:0{width}d}:" for c in range(copies)]
    node_id = np.concatenate([np.char.add(prefix, base.node_id) for prefix in prefixes])
    nodes = {"node_id": node_id}
    for name in NODE_ARRAYS[1:]:
        nodes[name] = np.tile(getattr(base, name), copies)
    src = base.entry_source.astype(np.int64)
    dst = base.indices.astype(np.int64)
    keep = src < dst
    src, dst, dist = src[keep], dst[keep], base.distance_km[keep]
    offsets = np.repeat(np.arange(copies, dtype=np.int64) * n, len(src))
    u = np.tile(src, copies) + offsets
    v = np.tile(dst, copies) + offsets
    d = np.tile(dist, copies)
    anchors = (np.arange(links_per_join, dtype=np.int64) * n) // links_per_join
    joins = np.arange(copies - 1, dtype=np.int64)
    link_u = (joins[:, None] * n + anchors[None, :]).ravel()
    meta = {"source": f"tile({base.meta.get('source', 'graph')}, copies={copies}, links={links_per_join})"}
    return assemble_graph(
        nodes,
        np.concatenate([u, link_u]),
        np.concatenate([v, link_u + n]),
        np.concatenate([d, np.full(len(link_u), np.nan)]),
        meta,
    )
