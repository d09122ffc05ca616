"""/risks over a sorted, row-grouped publication and through the slice cache.

The same risk rows are published twice -- as the risk writer lays them out (sorted, small
row groups) and as one unsorted row group -- and read with and without the slice cache:
all four answers must be identical for edge and hostile filters.
"""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from grid_api_fixtures import make_config, publish_topology

from grid_platform.api.fetchers import load_registry
from grid_platform.api.slices import MAX_SLICES, slice_payloads
from grid_platform.publish import publish
from grid_platform.risk.publication import RISK_ROW_GROUP_SIZE, write_risk_table

FIRST = date(2026, 7, 1)
DATES = [FIRST + timedelta(days=k) for k in range(40)]
N = 40_000  # > 2 row groups of the writer


def _risks() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    hostile = ["x' OR 1=1 --", 'quote"back\\slash', "zürich\nline", "\u2603", ""]
    segments = [f"{i:032x}" for i in rng.integers(0, 2**40, N - len(hostile))] + hostile
    levels = rng.choice(["ALERT", "WARNING"], N)
    metrics = [json.dumps({"gust_excess": round(float(g), 3), "note": "ä\"'"}) for g in rng.random(N) * 15]
    metrics[:50] = [None] * 50  # coalesced to {}
    frame = pd.DataFrame({
        "segment_id": segments,
        "date": rng.choice(np.array(DATES, dtype=object), N),
        "risk_vector": rng.choice(["wind", "heat"], N),
        "risk_level": levels,
        "risk_color_hex": np.where(levels == "ALERT", "#D00000", None),
        "metrics": metrics,
    })
    return frame.sample(frac=1.0, random_state=3)


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """Clients ``(sorted|unsorted, slices|plain)`` over one published directory."""
    import warnings

    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient
    from grid_api_fixtures import make_settings

    from grid_platform.api.app import create_app

    data_dir = tmp_path_factory.mktemp("risk_slices")
    root = make_settings(data_dir).published_dir
    frame = _risks()
    publish(root, "risk", "sorted", lambda d: write_risk_table(frame, d / "risks.parquet"))
    publish(root, "risk", "unsorted", lambda d: frame.to_parquet(d / "risks.parquet", index=False))
    publish_topology(root, "sorted")
    clients = {}
    for name, slice_bytes in (("slices", 64 * 2**20), ("plain", 0)):
        client = TestClient(create_app(make_settings(data_dir), config=make_config(slice_cache_bytes=slice_bytes,
                                                                                     response_cache_bytes=0)))
        clients[name] = client.__enter__()
    yield clients
    for client in clients.values():
        client.__exit__(None, None, None)


def test_writer_sorts_into_small_row_groups(apps, tmp_path):
    path = tmp_path / "risks.parquet"
    write_risk_table(_risks(), path)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == -(-N // RISK_ROW_GROUP_SIZE)
    keys = duckdb.sql(f"SELECT date, risk_vector, risk_level, segment_id FROM '{path}'").fetchall()
    assert keys == sorted(keys)
    # Row-group date ranges do not overlap: a one-date read prunes by statistics.
    date_column = meta.schema.to_arrow_schema().get_field_index("date")
    ranges = [(meta.row_group(i).column(date_column).statistics.min, meta.row_group(i).column(date_column).statistics.max)
              for i in range(meta.num_row_groups)]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges))


def test_writer_keeps_types_of_an_empty_table(tmp_path):
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in
                          ["segment_id", "date", "risk_vector", "risk_level", "risk_color_hex", "metrics"]})
    write_risk_table(empty, tmp_path / "risks.parquet")
    assert str(pq.read_schema(tmp_path / "risks.parquet").field("date").type) == "date32[day]"


QUERIES = [
    {"dates": [str(DATES[0])]},
    {"dates": [str(DATES[3])], "risk_vector": ["wind"]},
    {"dates": [str(DATES[5]), str(DATES[1]), str(DATES[5])], "risk_vector": ["heat", "wind", "heat"]},
    {"dates": ["2031-01-01"]},  # nothing published that day
    {"dates": [str(DATES[0]), "2031-01-01"], "risk_vector": ["heat"]},
    {"dates": [str(DATES[2])], "limit": 7, "offset": 5},
    {"dates": [str(DATES[2]), str(DATES[3])], "limit": 1},  # truncated
    {"dates": [str(DATES[2])], "offset": 100_000},  # past the end
    {"dates": [str(d) for d in DATES[:MAX_SLICES + 2]], "risk_vector": ["wind"]},  # too many slices
    {"dates": [str(d) for d in DATES[:6]], "risk_vector": ["wind", "heat"], "limit": 10000},  # truncated slices
    {"dates": [str(DATES[4])], "operational_unit": ["x' OR 1=1 --"], "line_name": ['"; DROP TABLE risks; --']},
]


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
def test_sorted_and_sliced_answers_equal_the_plain_query(apps, token, query):
    headers = token(networks=("sorted", "unsorted"))
    answers = []
    for network in ("unsorted", "sorted"):
        for name in ("plain", "slices", "slices"):  # the second slices answer comes from the cache
            response = apps[name].get(f"/api/grid/{network}/risks", params=query, headers=headers)
            assert response.status_code == 200, response.text
            answers.append((response.json(), response.headers.get("x-result-truncated")))
    first = answers[0]
    assert all(answer == first for answer in answers[1:])
    body, _ = first
    assert body["count"] == len(body["items"]) and set(body) == {"items", "limit", "offset", "count"}
    keys = [(r["date"], r["risk_vector"], r["risk_level"], r["segment_id"]) for r in body["items"]]
    assert keys == sorted(keys)
    assert all(isinstance(r["metrics"], dict) for r in body["items"])


def test_edge_answers_have_the_expected_sizes(apps, token):
    headers = token(networks=("sorted",))
    one = apps["slices"].get("/api/grid/sorted/risks", params={"dates": str(DATES[2]), "limit": 1}, headers=headers)
    assert one.json()["count"] == 1 and one.headers["x-result-truncated"] == "true"
    none = apps["slices"].get("/api/grid/sorted/risks", params={"dates": "2031-01-01"}, headers=headers)
    assert none.json() == {"items": [], "limit": 10000, "offset": 0, "count": 0}
    hostile = [row for d in DATES for row in apps["slices"].get(
        "/api/grid/sorted/risks", params={"dates": str(d)}, headers=headers).json()["items"]]
    assert len(hostile) == N
    assert {"x' OR 1=1 --", 'quote"back\\slash', "zürich\nline", "\u2603", ""} <= {r["segment_id"] for r in hostile}
    assert {r["metrics"].get("note") for r in hostile} == {"ä\"'", None}


def test_slice_payloads_order_and_bounds():
    spec = load_registry().get("grid.risks")
    parts = slice_payloads(spec, {"dates": ["2026-07-02", "2026-07-01", "2026-07-02"], "network_id": "n"})
    assert parts == [{"dates": ["2026-07-01"], "network_id": "n"}, {"dates": ["2026-07-02"], "network_id": "n"}]
    parts = slice_payloads(spec, {"dates": ["2026-07-01"], "risk_vector": ["wind", "heat"], "network_id": "n"})
    assert [p["risk_vector"] for p in parts] == [["heat"], ["wind"]]
    many = {"dates": [str(FIRST + timedelta(days=k)) for k in range(MAX_SLICES + 1)], "network_id": "n"}
    assert slice_payloads(spec, many) is None
    assert slice_payloads(spec, {**many, "dates": many["dates"][:20], "risk_vector": ["wind", "heat"]}) is None


def test_slice_by_must_name_a_list_parameter(tmp_path: Path):
    from grid_platform.api.fetchers import SpecError

    spec = """
domain: t
base_path: /api/t/{network_id}
models: {Row: {a: integer}}
fetchers:
  - id: rows
    path: rows
    client: publications
    dataset: risk
    parameters: {level: {type: string}}
    slice_by: [level]
    query: SELECT 1 AS a
    response: {shape: envelope, model: Row}
"""
    (tmp_path / "t.yaml").write_text(spec)
    with pytest.raises(SpecError, match="slice_by 'level' is not a list parameter"):
        load_registry(tmp_path / "*.yaml")
