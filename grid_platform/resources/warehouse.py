"""The one DuckDB warehouse file shared by dlt, dbt and the resources."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import dlt
import duckdb
import pandas as pd
import pyarrow.parquet as pq

from grid_platform.ckw.source import DATASET


@dataclass(frozen=True)
class Slice:
    """Rows of ``<schema>.<table>`` to replace: those matching ``where`` and, for a dated table,
    ``first <= date_column <= last`` (a None bound is open); ``source`` is a DataFrame or a
    Parquet file whose rows in that date range are inserted, with the ``where`` values."""

    table: str
    source: pd.DataFrame | Path
    where: dict
    date_column: str | None = None
    first: date | None = None
    last: date | None = None


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _frame_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The frame with explicit types DuckDB cannot infer from an empty column (text, dates) and
    the select expressions of its columns."""
    out, selects = frame.copy(), []
    for column in frame.columns:
        if column == "date" or column.endswith("_date"):
            out[column] = pd.to_datetime(out[column])
            selects.append(f"cast({quote(column)} as date) as {quote(column)}")
            continue
        if out[column].dtype == object:
            out[column] = out[column].astype("string")
        selects.append(quote(column))
    return out, selects


def _add_new_columns(con: duckdb.DuckDBPyConnection, schema: str, name: str, payload: str) -> None:
    existing = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [schema, name]).fetchall()}
    for column, column_type, *_ in con.execute(f"describe {payload}").fetchall():
        if column not in existing:
            con.execute(f"alter table {schema}.{name} add column {quote(column)} {column_type}")


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

    def replace_slices(self, schema: str, slices: list[Slice]) -> dict[str, int]:
        """Apply every slice in ONE transaction, so readers see all tables before or all after and a
        failure keeps every old row. Columns new to a table are added; absent ones stay null.
        Returns the rows inserted per table."""
        written: dict[str, int] = {}
        with self.connect() as con:
            con.execute(f"create schema if not exists {schema}")
            con.execute("begin transaction")
            try:
                for i, s in enumerate(slices):
                    if isinstance(s.source, pd.DataFrame):
                        frame, selects = _frame_columns(s.source.drop(columns=[c for c in s.where if c in s.source]))
                        relation = f"incoming_{i}"
                        con.register(relation, frame)
                    else:
                        relation = "read_parquet('{}')".format(s.source.as_posix().replace("'", "''"))
                        selects = [quote(c) for c in pq.read_schema(s.source).names if c not in s.where]
                    keys = [f"?::varchar as {quote(k)}" for k in s.where]
                    select = f"select {', '.join(keys + selects)} from {relation}"
                    table = f"{schema}.{s.table}"
                    con.execute(f"create table if not exists {table} as {select} limit 0", list(s.where.values()))
                    _add_new_columns(con, schema, s.table, f"select {', '.join(selects)} from {relation}")
                    dated, dated_params = [], []
                    for bound, op in ((s.first, ">="), (s.last, "<=")):
                        if s.date_column and bound is not None:
                            dated.append(f"{quote(s.date_column)} {op} ?")
                            dated_params.append(bound)
                    keyed = [f"{quote(k)} = ?" for k in s.where]
                    con.execute(f"delete from {table} where {' and '.join(keyed + dated) or 'true'}",
                                list(s.where.values()) + dated_params)
                    written[s.table] = con.execute(
                        f"insert into {table} by name select * from ({select}) where {' and '.join(dated) or 'true'}",
                        list(s.where.values()) + dated_params).fetchone()[0]
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
        return written

    def replace_views(self, schema: str, views: dict[str, str], prepare: list[str] | None = None) -> None:
        """Create or replace ``<schema>.<name> AS <select>`` for every entry in ONE transaction,
        dropping a table of the same name first (a warehouse from before the views). ``prepare``:
        statements the selects need first (e.g. loading httpfs for an object store)."""
        with self.connect() as con:
            for statement in prepare or []:
                con.execute(statement)
            con.execute(f"create schema if not exists {schema}")
            con.execute("begin transaction")
            try:
                for name, select in views.items():
                    kind = con.execute("select table_type from information_schema.tables where table_schema = ? "
                                       "and table_name = ?", [schema, name]).fetchone()
                    if kind is not None and kind[0] == "BASE TABLE":
                        con.execute(f"drop table {schema}.{quote(name)}")
                    con.execute(f"create or replace view {schema}.{quote(name)} as {select}")
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
