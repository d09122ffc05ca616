"""Real networks shared by the analytics tests (loaded once per session: pandapower is slow to import)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from grid_platform.analytics import (
    GridGraph,
    compute_centrality,
    graph_from_matpower,
    graph_from_pandapower,
    matpower_case_path,
)
from grid_platform.analytics.centrality import CentralityResult

SIMBENCH_CODE = "1-HVMV-mixed-all-0-sw"


def _quiet_import_pandapower() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pandapower import networks
    return networks


@pytest.fixture(scope="session")
def oberrhein_net() -> Any:
    return _quiet_import_pandapower().mv_oberrhein()


@pytest.fixture(scope="session")
def schutterwald_net() -> Any:
    return _quiet_import_pandapower().lv_schutterwald()


@pytest.fixture(scope="session")
def simbench_net() -> Any:
    _quiet_import_pandapower()
    import simbench

    return simbench.get_simbench_net(SIMBENCH_CODE)


@pytest.fixture(scope="session")
def oberrhein(oberrhein_net: Any) -> GridGraph:
    return graph_from_pandapower(oberrhein_net, source="mv_oberrhein")


@pytest.fixture(scope="session")
def schutterwald(schutterwald_net: Any) -> GridGraph:
    return graph_from_pandapower(schutterwald_net, source="lv_schutterwald")


@pytest.fixture(scope="session")
def simbench_graph(simbench_net: Any) -> GridGraph:
    return graph_from_pandapower(simbench_net, source=SIMBENCH_CODE)


@pytest.fixture(scope="session")
def activsg2000() -> GridGraph:
    return graph_from_matpower(matpower_case_path("case_ACTIVSg2000"), source="case_ACTIVSg2000")


@pytest.fixture(scope="session")
def oberrhein_centrality(oberrhein: GridGraph) -> CentralityResult:
    return compute_centrality(oberrhein)


@pytest.fixture(scope="session")
def simbench_centrality(simbench_graph: GridGraph) -> CentralityResult:
    return compute_centrality(simbench_graph)


# ---- Dagster platform over real published data (asset and API tests) -----------------------

NETWORK = "oberrhein_mv"  # the demo network of the registry (networks.yaml)


@dataclass
class AnalyticsPlatform:
    data_dir: Path
    instance: Any
    warehouse: Any
    result: Any = None  # the fixture's materialisation

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        import duckdb

        with duckdb.connect(self.warehouse.path, read_only=True) as con:
            return con.execute(sql, params or []).fetchall()


@contextmanager
def analytics_platform(root: Path, project_downloads: Path) -> Iterator[AnalyticsPlatform]:
    """A data dir, warehouse and Dagster instance where ``oberrhein_mv`` is a network partition.

    ``GRID_DATA_DIR`` points at ``root/data`` only while the context is open (the assets resolve
    their publication paths from it), so other test modules keep the session's data dir.
    """
    import dagster as dg

    from grid_platform.assets.topology import networks
    from grid_platform.resources.warehouse import WarehouseResource

    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    if project_downloads.exists():
        (data_dir / "downloads").symlink_to(project_downloads, target_is_directory=True)
    patch = pytest.MonkeyPatch()
    patch.setenv("GRID_DATA_DIR", str(data_dir))
    try:
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(networks.name, [NETWORK])
        warehouse = WarehouseResource(path=str(root / "warehouse.duckdb"), pipelines_dir=str(root / "dlt"))
        yield AnalyticsPlatform(data_dir, instance, warehouse)
    finally:
        patch.undo()
