"""The one DuckDB warehouse file shared by dlt, dbt and the resources."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import dagster as dg
import dlt
import duckdb

from grid_platform.ckw.source import DATASET


class WarehouseResource(dg.ConfigurableResource):
    """DuckDB warehouse at an absolute path. Every writer runs in pool ``duckdb`` (limit 1)."""

    path: str
    pipelines_dir: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect(self.path, read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    def dlt_pipeline(self, name: str) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.duckdb(self.path),
            dataset_name=DATASET,
            pipelines_dir=self.pipelines_dir,
        )

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.connect() as con:
            return con.execute(sql, params or []).fetchall()

    def table_exists(self, table: str, schema: str = DATASET) -> bool:
        rows = self.query(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        )
        return rows[0][0] > 0
