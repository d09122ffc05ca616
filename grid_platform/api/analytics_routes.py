"""Cascade analysis from any asset of a network the caller may read (grid-analytics.md §2).

``GET /api/grid/{network_id}/analytics/cascade?patient_zero_id=bus:42&scenario=winter_storm``

The graph and its centrality come from the network's current ``analytics`` publication (written
by the ``analytics/grid_centrality`` asset), loaded once per publication version and kept in a
small cache: a request never rebuilds the graph, it only propagates (§2.2, deterministic). Access
follows the grid routes: the policy decides before anything is read (403 for a network the
caller does not hold); a network without a publication or an unknown asset answers 404; bounds
on every parameter (waves, nodes, a threshold within (0, 1]) give 422.
"""

import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from grid_platform.analytics import SCENARIOS, CascadeParams, scenario_params, simulate_storm
from grid_platform.analytics.snapshot import DATASET, AnalyticsSnapshot, load_snapshot
from grid_platform.api.policy import PolicyEngine
from grid_platform.api.routes import ErrorDetail, read_access
from grid_platform.publish import current

MAX_WAVES = 100
MAX_NODES = 10_000  # bounds the answer (one cascade_order row per failed asset)
CACHED_VERSIONS = 8

Scenario = Literal["custom", *sorted(SCENARIOS)]  # type: ignore[valid-type]


class SnapshotCache:
    """Graph + centrality per (network, publication version); old versions fall out (LRU)."""

    def __init__(self, published_dir: Path, size: int = CACHED_VERSIONS):
        self.published_dir = published_dir
        self.size = size
        self._items: OrderedDict[tuple[str, str], AnalyticsSnapshot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, network_id: str) -> AnalyticsSnapshot:
        publication = current(self.published_dir, DATASET, network_id)
        if publication is None:
            raise HTTPException(status_code=404, detail=f"no cascade analytics published for network {network_id!r}")
        key = (network_id, publication.version)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        snapshot = load_snapshot(publication)
        with self._lock:
            self._items[key] = snapshot
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return snapshot


def cascade_params(scenario: str, temperature_c: float | None, load_multiplier: float | None,
                   failure_threshold: float | None, max_waves: int, max_nodes: int) -> CascadeParams:
    """The preset's values (or the §2.1 defaults for ``custom``), overridden by explicit ones."""
    base = CascadeParams() if scenario == "custom" else scenario_params(scenario)
    explicit = {"temperature_c": temperature_c, "load_multiplier": load_multiplier,
                "failure_threshold": failure_threshold}
    return replace(base, max_waves=max_waves, max_nodes=max_nodes,
                   **{k: v for k, v in explicit.items() if v is not None})


def build_analytics_router(policy: PolicyEngine, published_dir: Path) -> APIRouter:
    router = APIRouter(tags=["analytics"])
    cache = SnapshotCache(published_dir)
    access = read_access(policy)

    @router.get(
        "/api/grid/{network_id}/analytics/cascade",
        summary="Cascade failure from one asset",
        description="Deterministic wave-by-wave cascade (grid-analytics.md §2.2) from `patient_zero_id`, a node of "
                    "the network's analytics graph (`bus:<idx>`), with a §2.4 scenario preset or custom parameters "
                    "(explicit values override the preset). Answers the §2.3 result plus assets by type, line km "
                    "and customers lost.",
        responses={
            401: {"model": ErrorDetail, "description": "Missing, expired or invalid token"},
            403: {"model": ErrorDetail, "description": "Refused by the access policy (reason in detail)"},
            404: {"model": ErrorDetail, "description": "No analytics published for the network, or unknown asset"},
        },
    )
    async def cascade(
        network_id: Annotated[str, Depends(access)],
        patient_zero_id: Annotated[str, Query(min_length=1, max_length=200, description="Failing asset (node id)")],
        scenario: Annotated[Scenario, Query(description="§2.4 preset or custom")] = "custom",
        temperature_c: Annotated[float | None, Query(ge=-60, le=60)] = None,
        load_multiplier: Annotated[float | None, Query(ge=0, le=10)] = None,
        failure_threshold: Annotated[float | None, Query(gt=0, le=1, description="Failure probability threshold")] = None,
        max_waves: Annotated[int, Query(ge=0, le=MAX_WAVES)] = 10,
        max_nodes: Annotated[int, Query(ge=1, le=MAX_NODES, description="Failures, patient zero included")] = 100,
    ) -> Response:
        params = cascade_params(scenario, temperature_c, load_multiplier, failure_threshold, max_waves, max_nodes)
        snapshot = await run_in_threadpool(cache.get, network_id)
        try:
            snapshot.graph.index_of(patient_zero_id)
        except KeyError:
            raise HTTPException(status_code=404,
                                detail=f"asset {patient_zero_id!r} not found in network {network_id!r}") from None

        def run() -> bytes:
            impact = simulate_storm(snapshot.graph, [patient_zero_id], snapshot.betweenness, params,
                                    scenario_name=scenario)
            body = {"network_id": network_id, "analytics_version": snapshot.publication.version, **impact.to_dict()}
            return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

        return Response(await run_in_threadpool(run), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    return router
