"""The one DuckDB warehouse file shared by dlt, dbt and the resources."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import dagster as dg
import dlt
import duckdb
import pandas as pd

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

    def replace_rows(self, schema: str, table: str, frame: pd.DataFrame, where: dict[str, Any]) -> int:
        """Replace the rows matching ``where`` by ``frame`` in one transaction (readers never see
        the slice half-replaced; a failure keeps the old rows). Names are code constants."""
        with self.connect() as con:
            con.execute(f"create schema if not exists {schema}")
            con.register("incoming", frame)
            con.execute("begin transaction")
            con.execute(f"create table if not exists {schema}.{table} as select * from incoming limit 0")
            condition = " and ".join(f"{column} = ?" for column in where)
            con.execute(f"delete from {schema}.{table} where {condition}", list(where.values()))
            con.execute(f"insert into {schema}.{table} by name select * from incoming")
            con.execute("commit")
            con.unregister("incoming")
        return len(frame)
