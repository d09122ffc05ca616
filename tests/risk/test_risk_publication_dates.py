"""Date columns of the risk Parquet files are Arrow date32 whatever form the frame holds them in
(datetime64, aware timestamps, date objects, missing values), in the frame's column order."""

from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from grid_platform.risk.publication import _write


def test_date_columns_become_calendar_dates_in_place(tmp_path):
    frame = pd.DataFrame({
        "segment_id": ["a", "b", "c"],
        "date": pd.to_datetime(["2026-03-29", "2026-03-30", None]),
        "risk_index": [1.0, 2.0, 3.0],
        "soil_asof_date": [date(2026, 3, 28), None, date(2026, 3, 30)],
    })
    _write(frame, tmp_path / "t.parquet")
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.column_names == ["segment_id", "date", "risk_index", "soil_asof_date"]
    assert table.schema.field("date").type == pa.date32() == table.schema.field("soil_asof_date").type
    assert table["date"].to_pylist() == [date(2026, 3, 29), date(2026, 3, 30), None]
    assert table["soil_asof_date"].to_pylist() == [date(2026, 3, 28), None, date(2026, 3, 30)]


def test_aware_timestamps_keep_their_wall_clock_date(tmp_path):
    # 23:30 in Zurich is the next day in UTC: the written date is the local one.
    frame = pd.DataFrame({"date": pd.to_datetime(["2026-07-01 23:30"]).tz_localize("Europe/Zurich")})
    _write(frame, tmp_path / "t.parquet")
    assert pq.read_table(tmp_path / "t.parquet")["date"].to_pylist() == [date(2026, 7, 1)]


def test_empty_and_all_missing_date_columns_stay_typed(tmp_path):
    _write(pd.DataFrame({"date": pd.Series([], dtype=object)}), tmp_path / "empty.parquet")
    _write(pd.DataFrame({"date": [None, None]}), tmp_path / "missing.parquet")
    assert pq.read_table(tmp_path / "empty.parquet").schema.field("date").type == pa.date32()
    assert pq.read_table(tmp_path / "missing.parquet")["date"].to_pylist() == [None, None]
