"""Cascade failure simulation (grid-analytics.md §2) and multi-seed storm scenarios.

The §2.2 algorithm is a FIFO BFS over the undirected graph. Because a node of wave w is
always dequeued before any node of wave w+1, the queue can be processed one wave at a time
without changing the result:

* all CSR rows of the wave's nodes are gathered in queue order, neighbours ascending by
  ``node_id`` (CSR rows are sorted, and the index order is the node_id order);
* neighbours already failed are dropped, ``p(s, t)`` is computed for the rest, and entries
  below the threshold are dropped (such a neighbour is *not* visited and stays reachable);
* a node reached by several sources of the wave fails once, triggered by the first source in
  queue order: exactly the sequential rule, since the first success marks it visited;
* ``max_nodes`` is checked before every new failure, so the wave is cut after the first
  ``max_nodes - failed`` new failures in sequential order.

A storm starts from several failed seeds at once (all in wave 0, ascending node_id), then
propagates with the same rule. This goes beyond the seed, which only simulated one patient zero.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from grid_platform.analytics.graph import NODE_TYPE_CODE, NODE_TYPES, GridGraph
from grid_platform.analytics.traversal import csr_entries

CUSTOMERS_PER_TRANSFORMER = 50  # §2.3
PROBABILITY_CAP = 0.95


@dataclass(frozen=True)
class CascadeParams:
    """§2.1 parameters (``patient_zero_id`` and ``scenario_name`` are passed separately)."""

    temperature_c: float = 25.0
    load_multiplier: float = 1.0
    failure_threshold: float = 0.3
    max_waves: int = 10
    max_nodes: int = 100  # includes patient zero

    def __post_init__(self) -> None:
        # Canonical types, so that 25 and 25.0 give the same params hash.
        for name in ("temperature_c", "load_multiplier", "failure_threshold"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("max_waves", "max_nodes"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.max_nodes < 1:
            raise ValueError("max_nodes must be >= 1")
        if self.max_waves < 0:
            raise ValueError("max_waves must be >= 0")
        if self.load_multiplier < 0:
            raise ValueError("load_multiplier must be >= 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def params_hash(self) -> str:
        """Stable hash of the parameters, part of the result key (§2.3)."""
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# §2.4, the single canonical scenario table: (temperature °C, load multiplier, threshold).
SCENARIOS: dict[str, tuple[float, float, float]] = {
    "normal": (25.0, 1.0, 0.30),
    "winter_storm": (-10.0, 1.8, 0.25),
    "heat_wave": (42.0, 1.5, 0.30),
    "storm_hurricane": (28.0, 1.2, 0.20),
}


def scenario_params(name: str, *, max_waves: int = 10, max_nodes: int = 100) -> CascadeParams:
    """Parameters of a §2.4 preset, with the run limits chosen by the caller."""
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; presets are {sorted(SCENARIOS)}")
    temperature, load, threshold = SCENARIOS[name]
    return CascadeParams(temperature, load, threshold, max_waves=max_waves, max_nodes=max_nodes)


def temp_stress(temperature_c: float) -> float:
    if temperature_c < 0:
        return 1.0 + abs(temperature_c) / 20.0
    if temperature_c > 35:
        return 1.0 + (temperature_c - 35.0) / 15.0
    return 1.0


def failure_probability(
    distance_km: float, criticality: float, betweenness: float, temperature_c: float, load_multiplier: float
) -> float:
    """§2.2 score p(s, t) for one edge (the vectorised path uses the same operation order)."""
    p = (
        math.exp(-distance_km / 5.0)
        * criticality
        * (100.0 * betweenness + 0.1)
        * temp_stress(temperature_c)
        * load_multiplier
        * 0.5
    )
    return min(PROBABILITY_CAP, p)


def _failure_probabilities(
    distance_km: np.ndarray, criticality: np.ndarray, betweenness: np.ndarray, params: CascadeParams
) -> np.ndarray:
    p = (
        np.exp(-distance_km / 5.0)
        * criticality
        * (100.0 * betweenness + 0.1)
        * temp_stress(params.temperature_c)
        * params.load_multiplier
        * 0.5
    )
    return np.minimum(PROBABILITY_CAP, p)


@dataclass(frozen=True)
class Propagation:
    """Raw cascade in failure order: node index, wave, trigger index (-1 for seeds), p, CSR entry."""

    node: np.ndarray
    wave: np.ndarray
    triggered_by: np.ndarray
    probability: np.ndarray
    entry: np.ndarray


def propagate(
    graph: GridGraph, seeds: np.ndarray, betweenness: np.ndarray, params: CascadeParams
) -> Propagation:
    """Run §2.2 from the seed indices (all fail in wave 0, in the given order)."""
    indptr, indices = graph.indptr, graph.indices
    length = graph.length_km
    criticality = graph.criticality_score
    failed = np.zeros(graph.n_nodes, dtype=bool)
    failed[seeds] = True
    count = len(seeds)
    nodes, waves, triggers, probabilities, entries_used = (
        [seeds],
        [np.zeros(count, dtype=np.int32)],
        [np.full(count, -1, dtype=np.int64)],
        [np.ones(count)],
        [np.full(count, -1, dtype=np.int64)],
    )
    frontier, wave = seeds, 0
    while frontier.size and wave < params.max_waves and count < params.max_nodes:
        entries, counts = csr_entries(indptr, frontier)
        sources = np.repeat(frontier, counts)
        targets = indices[entries]
        open_ = ~failed[targets]
        entries, sources, targets = entries[open_], sources[open_], targets[open_]
        p = _failure_probabilities(length[entries], criticality[sources], betweenness[targets], params)
        hit = p >= params.failure_threshold
        entries, sources, targets, p = entries[hit], sources[hit], targets[hit], p[hit]
        _, first = np.unique(targets, return_index=True)
        first = np.sort(first)[: params.max_nodes - count]
        frontier = targets[first].astype(np.int64)
        wave += 1
        failed[frontier] = True
        count += len(frontier)
        nodes.append(frontier)
        waves.append(np.full(len(frontier), wave, dtype=np.int32))
        triggers.append(sources[first].astype(np.int64))
        probabilities.append(p[first])
        entries_used.append(entries[first])
    return Propagation(
        node=np.concatenate(nodes),
        wave=np.concatenate(waves),
        triggered_by=np.concatenate(triggers),
        probability=np.concatenate(probabilities),
        entry=np.concatenate(entries_used),
    )


def _betweenness_array(graph: GridGraph, betweenness: np.ndarray | pd.Series) -> np.ndarray:
    """Per-node normalised betweenness aligned with the graph; null (outside the LCC) counts as 0."""
    if isinstance(betweenness, pd.Series):
        values = betweenness.reindex(graph.node_id).to_numpy(dtype=np.float64)
    else:
        values = np.asarray(betweenness, dtype=np.float64)
        if values.shape != (graph.n_nodes,):
            raise ValueError(f"betweenness has shape {values.shape}, graph has {graph.n_nodes} nodes")
    return np.nan_to_num(values, nan=0.0)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values, NaN / NA as None (full float precision)."""
    columns = {
        name: [None if pd.isna(value) else value for value in frame[name].tolist()] for name in frame.columns
    }
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


@dataclass(frozen=True, eq=False)
class CascadeResult:
    """§2.3 result. Totals and the wave breakdown are computed eagerly; the per-node tables
    (``cascade_order``, ``propagation_paths``) are built from the raw run on first access,
    because a million-node cascade spends more time making strings than propagating."""

    scenario_name: str
    patient_zero: str  # storm runs: the seed ids joined by ","
    seeds: tuple[str, ...]
    params: CascadeParams
    run: Propagation = field(repr=False)
    graph: GridGraph = field(repr=False)
    wave_breakdown: pd.DataFrame
    total_affected_nodes: int
    affected_capacity_mw: float
    estimated_customers_affected: int
    max_cascade_depth: int
    simulation_timestamp: datetime

    @property
    def key(self) -> tuple[str, str, str]:
        """(scenario_name, patient_zero_id, params hash): a re-run with the same key overwrites."""
        return (self.scenario_name, self.patient_zero, self.params.params_hash())

    @cached_property
    def _ids(self) -> tuple[pd.arrays.ArrowStringArray, pd.arrays.ArrowStringArray]:
        return self.graph.take_ids(self.run.node), self.graph.take_ids(self.run.triggered_by)

    @cached_property
    def cascade_order(self) -> pd.DataFrame:
        graph, node = self.graph, self.run.node
        node_ids, trigger_ids = self._ids
        return pd.DataFrame(
            {
                "node_id": node_ids,
                "node_name": graph.take_ids(node, names=True),
                "node_type": graph.node_type_categorical(node),
                "lat": graph.lat[node],
                "lon": graph.lon[node],
                "capacity_kw": graph.capacity_kw[node],
                "voltage_kv": graph.voltage_kv[node],
                "criticality_score": graph.criticality_score[node],
                "downstream_transformers": graph.downstream_transformers[node],
                "order": np.arange(len(node)),
                "wave_depth": self.run.wave,
                "triggered_by": trigger_ids,
                "failure_probability": self.run.probability,
            }
        )

    @cached_property
    def propagation_paths(self) -> pd.DataFrame:
        run = self.run
        has_trigger = run.triggered_by >= 0
        node_ids, trigger_ids = self._ids
        return pd.DataFrame(
            {
                "from_node": trigger_ids[has_trigger],
                "to_node": node_ids[has_trigger],
                "order": np.flatnonzero(has_trigger),
                "distance_km": self.graph.length_km[run.entry[has_trigger]],
                "failure_probability": run.probability[has_trigger],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready §2.3 result."""
        return {
            "scenario_name": self.scenario_name,
            "patient_zero": self.patient_zero,
            "cascade_order": _records(self.cascade_order),
            "propagation_paths": _records(self.propagation_paths),
            "wave_breakdown": _records(self.wave_breakdown),
            "total_affected_nodes": self.total_affected_nodes,
            "affected_capacity_mw": self.affected_capacity_mw,
            "estimated_customers_affected": self.estimated_customers_affected,
            "max_cascade_depth": self.max_cascade_depth,
            "simulation_timestamp": self.simulation_timestamp.isoformat(),
            "params": self.params.as_dict(),
            "params_hash": self.params.params_hash(),
        }


def _result(
    graph: GridGraph,
    run: Propagation,
    params: CascadeParams,
    scenario_name: str,
    patient_zero: str,
    seeds: tuple[str, ...],
    now: datetime | None,
) -> CascadeResult:
    node_type = graph.node_type[run.node]
    capacity_mw = graph.capacity_kw[run.node] / 1000.0
    customers = graph.downstream_transformers[run.node] * CUSTOMERS_PER_TRANSFORMER
    n_waves = int(run.wave.max()) + 1

    def per_wave(weights: np.ndarray | None = None) -> np.ndarray:
        counts = np.bincount(run.wave, weights=weights, minlength=n_waves)
        return counts if weights is None or weights.dtype.kind == "f" else counts.round().astype(np.int64)

    wave_breakdown = pd.DataFrame(
        {
            "wave_number": np.arange(n_waves),
            "nodes_failed": per_wave(),
            "capacity_lost_mw": per_wave(capacity_mw),
            "customers_affected": per_wave(customers),
            "substations": per_wave(node_type == NODE_TYPE_CODE["SUBSTATION"]),
            "transformers": per_wave(node_type == NODE_TYPE_CODE["TRANSFORMER"]),
        }
    )
    return CascadeResult(
        scenario_name=scenario_name,
        patient_zero=patient_zero,
        seeds=seeds,
        params=params,
        run=run,
        graph=graph,
        wave_breakdown=wave_breakdown,
        total_affected_nodes=len(run.node),
        affected_capacity_mw=float(capacity_mw.sum()),
        estimated_customers_affected=int(customers.sum()),
        max_cascade_depth=n_waves - 1,
        simulation_timestamp=now or datetime.now(UTC),
    )


def simulate_cascade(
    graph: GridGraph,
    patient_zero_id: str,
    betweenness: np.ndarray | pd.Series,
    params: CascadeParams = CascadeParams(),
    *,
    scenario_name: str = "custom",
    now: datetime | None = None,
) -> CascadeResult:
    """§2 cascade from one patient zero. ``betweenness``: normalised §3 betweenness per node."""
    seed = graph.index_of(patient_zero_id)
    run = propagate(graph, seed, _betweenness_array(graph, betweenness), params)
    return _result(graph, run, params, scenario_name, str(patient_zero_id), (str(patient_zero_id),), now)


def simulate_scenario(
    graph: GridGraph,
    patient_zero_id: str,
    betweenness: np.ndarray | pd.Series,
    scenario_name: str,
    *,
    max_waves: int = 10,
    max_nodes: int = 100,
    now: datetime | None = None,
) -> CascadeResult:
    """§2 cascade with a §2.4 preset."""
    params = scenario_params(scenario_name, max_waves=max_waves, max_nodes=max_nodes)
    return simulate_cascade(graph, patient_zero_id, betweenness, params, scenario_name=scenario_name, now=now)


@dataclass(frozen=True)
class StormImpact:
    """What a storm takes out: the cascade plus asset, line-km and customer totals."""

    cascade: CascadeResult
    seed_count: int
    spread_count: int  # failures beyond the seeds
    assets_lost: dict[str, int]  # per node type
    line_km_lost: float  # known line lengths touching a failed node
    customers_lost: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.cascade.to_dict(),
            "seed_node_ids": list(self.cascade.seeds),
            "seed_count": self.seed_count,
            "spread_count": self.spread_count,
            "assets_lost": self.assets_lost,
            "line_km_lost": self.line_km_lost,
            "customers_lost": self.customers_lost,
        }


def simulate_storm(
    graph: GridGraph,
    failed_node_ids: list[str] | np.ndarray,
    betweenness: np.ndarray | pd.Series,
    params: CascadeParams | None = None,
    *,
    scenario_name: str = "storm_hurricane",
    now: datetime | None = None,
) -> StormImpact:
    """Cascade from every node failed by a storm (e.g. the nodes of ALERT segments) at once.

    All seeds fail in wave 0 (ascending node_id) and count towards ``max_nodes``; they fail
    even when there are more of them than ``max_nodes``. Defaults to the ``storm_hurricane``
    preset with ``max_nodes`` large enough for every seed plus 100 further failures.
    ``line_km_lost`` sums known line lengths of edges with at least one failed end (a line
    whose pole or station is down is out); transformer and switch edges have no length.
    """
    seed_ids = np.unique(np.asarray(failed_node_ids, dtype=str))
    if seed_ids.size == 0:
        raise ValueError("a storm needs at least one failed node")
    seeds = graph.index_of(seed_ids)
    if params is None:
        params = replace(scenario_params("storm_hurricane"), max_nodes=len(seeds) + 100)
    run = propagate(graph, seeds, _betweenness_array(graph, betweenness), params)
    cascade = _result(graph, run, params, scenario_name, ",".join(seed_ids), tuple(seed_ids.tolist()), now)

    failed = np.zeros(graph.n_nodes, dtype=bool)
    failed[run.node] = True
    src = graph.entry_source
    once = src < graph.indices
    touched = once & (failed[src] | failed[graph.indices])
    line_km = float(np.nansum(graph.distance_km[touched]))
    type_counts = np.bincount(graph.node_type[run.node], minlength=len(NODE_TYPES))
    return StormImpact(
        cascade=cascade,
        seed_count=len(seeds),
        spread_count=len(run.node) - len(seeds),
        assets_lost={name: int(count) for name, count in zip(NODE_TYPES, type_counts)},
        line_km_lost=line_km,
        customers_lost=cascade.estimated_customers_affected,
    )
