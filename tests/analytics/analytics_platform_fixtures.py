"""A Dagster platform over real published data for the analytics asset and API tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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
