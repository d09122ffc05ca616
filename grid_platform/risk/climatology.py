"""P90 daily-Tmax thresholds by altitude band and month (risk-model.md §5).

Two tables are available and both can be inspected (``p90_tables``):

* ``config`` — the table of ``thresholds.yaml`` (1981-2010 Alpine climatology), the default;
* ``dwd_try2010`` — computed here from the 15 DWD test reference years: the stations are
  put in altitude bands by their elevation, their complete local days pooled per band and
  month, and the 90th percentile (linear interpolation) of daily Tmax taken. Months keep the
  heat season of the configured table (no new months gain a threshold); a band without a
  station keeps the configured values, and each cell says where it came from.

``heat.p90_source`` in the config chooses which one the model uses; ``resolve_p90`` returns
the configuration with that table in place and the name of the source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from grid_platform.risk.config import RiskConfig
from grid_platform.risk.levels import altitude_bands
from grid_platform.risk.pointdays import point_days
from grid_platform.weather.dwd_try import SOURCE, default_try_dir, load_try_year, try_files

TABLE_COLUMNS = ["altitude_band", "month", "p90_c", "source", "n_stations", "n_days", "stations"]
# A non-leap year in the stations' own civil time gives each reference day exactly once.
CLIMATOLOGY_YEAR = 2001
CLIMATOLOGY_TZ = "Europe/Berlin"


def config_table(cfg: RiskConfig) -> pd.DataFrame:
    rows = [{"altitude_band": band, "month": month, "p90_c": value, "source": "config", "n_stations": None,
             "n_days": None, "stations": None}
            for band in cfg.heat.band_names for month, value in sorted(cfg.heat.p90_c.get(band, {}).items())]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def try_daily_tmax(try_dir: Path, cfg: RiskConfig) -> pd.DataFrame:
    """Complete local days of every TRY station: ``point_id, station, elevation_m, date, temp_max_c``."""
    frames = []
    for path in try_files(try_dir):
        station, hourly, _ = load_try_year(path, CLIMATOLOGY_YEAR, cfg.weather_quality, CLIMATOLOGY_TZ)
        days = point_days(hourly, cfg, CLIMATOLOGY_TZ)
        frames.append(days.loc[days["temp_complete"], ["point_id", "elevation_m", "date", "temp_max_c"]]
                      .assign(station=station.name))
    if not frames:
        raise FileNotFoundError(f"no TRY files in {try_dir}; run scripts/fetch_demandlib.py")
    return pd.concat(frames, ignore_index=True)


def try_table(cfg: RiskConfig, try_dir: Path | None = None) -> pd.DataFrame:
    """The P90 table computed from the test reference years (see module doc)."""
    days = try_daily_tmax(Path(try_dir) if try_dir else default_try_dir(), cfg)
    days["altitude_band"] = altitude_bands(days["elevation_m"].to_numpy(float), cfg.heat)
    days["month"] = days["date"].dt.month
    grouped = days.groupby(["altitude_band", "month"]).agg(
        p90_c=("temp_max_c", lambda s: float(np.percentile(s, 90))), n_stations=("point_id", "nunique"),
        n_days=("temp_max_c", "size"), stations=("station", lambda s: ", ".join(sorted(set(s)))))
    table = config_table(cfg).set_index(["altitude_band", "month"])
    found = table.index.intersection(grouped.index)
    table.loc[found, ["p90_c", "n_stations", "n_days", "stations"]] = grouped.loc[found].to_numpy()
    table.loc[found, "source"] = SOURCE
    table["p90_c"] = table["p90_c"].astype(float).round(1)
    return table.reset_index()[TABLE_COLUMNS]


def p90_tables(cfg: RiskConfig, try_dir: Path | None = None) -> dict[str, pd.DataFrame]:
    return {"config": config_table(cfg), SOURCE: try_table(cfg, try_dir)}


def resolve_p90(cfg: RiskConfig, try_dir: Path | None = None, table: pd.DataFrame | None = None
                ) -> tuple[RiskConfig, str]:
    """The configuration whose P90 table is the one ``heat.p90_source`` names, and that name.
    ``table``: an already computed ``try_table`` (it takes a few seconds)."""
    if cfg.heat.p90_source == "config":
        return cfg, "config"
    table = try_table(cfg, try_dir) if table is None else table
    as_dict: dict[str, dict[int, float]] = {}
    for row in table.itertuples(index=False):
        as_dict.setdefault(row.altitude_band, {})[int(row.month)] = float(row.p90_c)
    return cfg.with_p90_table(as_dict, SOURCE), SOURCE
