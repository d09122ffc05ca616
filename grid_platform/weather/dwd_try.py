"""DWD test reference years (TRY 2010, "mittleres Jahr" 1988-2007) from the demandlib wheel.

data-sources.md §7.1. ``scripts/fetch_demandlib.py`` places the 15 files under
``$GRID_DATA_DIR/downloads/demandlib-0.2.2/resources_weather``.

Time convention: ``HH`` runs 1..24 in MEZ (UTC+1 all year, no DST) and stamps the hour at
which the values were taken, so ``HH = 24`` of day D is 00:00 MEZ of day D+1 and
``ts_utc = D 00:00 MEZ + HH h - 1 h``. A reference year is a cyclic mean year: mapped onto a
calendar year Y (``reference_hourly``), the ``HH = 24`` row of 31 Dec becomes 1 Jan 00:00 MEZ
of Y, so Y holds exactly its own 8,760 MEZ hours; in a leap year 29 Feb repeats 28 Feb.

TRY carries no gusts. ``derive_gusts`` adds them with a documented deterministic model (a
gust factor by wind speed regime and hour of day plus a reproducible per-station, per-hour
draw) and every derived value is flagged ``gust_derived = true``.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from grid_platform.settings import load_settings
from grid_platform.weather.quality import HOURLY_COLUMNS, QualityRules, clean_hourly

TRY_DIR_NAME = "demandlib-0.2.2/resources_weather"
TRY_MEMBER_PREFIX = "demandlib/vdi/resources_weather/"
SOURCE = "dwd_try2010"
MEZ_OFFSET = pd.Timedelta(hours=1)
COLUMNS = ["RG", "IS", "MM", "DD", "HH", "N", "WR", "WG", "t", "p", "x", "RF", "W", "B", "D", "IK", "A",
           "E", "IL"]
_POSITION = re.compile(r"Lage:\s*(\d+)°(\d+)'([NS]).*?(\d+)°(\d+)'([OWE]).*?(-?\d+)\s*Meter")
_STATION = re.compile(r"Station:\s*(.+?)\s{2,}WMO-Nummer:\s*(\d+)")
_REGION = re.compile(r"^TRY(\d+)")
# Station pressure moving this much against both neighbour hours is evidence of a bad record
# (Kassel 19 Aug 21 h: 881.6 hPa between 991.5 and 991.8); reported, not a rule of its own.
PRESSURE_JUMP_HPA = 20.0


@dataclass(frozen=True)
class TryStation:
    region: int  # TRY climate region 1..15 (the file number)
    name: str
    wmo: int
    lat: float
    lon: float
    elevation_m: float

    @property
    def point_id(self) -> str:
        return f"{SOURCE}_{self.region:02d}"


def try_files(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob("TRY2010_*_Jahr.dat"))


def parse_header(header: str, path: Path | str = "<text>") -> TryStation:
    station, position, region = _STATION.search(header), _POSITION.search(header), _REGION.search(header)
    if not (station and position and region):
        raise ValueError(f"{path}: not a DWD TRY header (station, position or region line missing)")
    lat_d, lat_m, ns, lon_d, lon_m, ew, elevation = position.groups()
    lat = (int(lat_d) + int(lat_m) / 60) * (1 if ns == "N" else -1)
    lon = (int(lon_d) + int(lon_m) / 60) * (-1 if ew == "W" else 1)  # O = Ost (east)
    return TryStation(int(region.group(1)), station.group(1).strip(), int(station.group(2)),
                      round(lat, 4), round(lon, 4), float(elevation))


def parse_try(path: Path | str) -> tuple[TryStation, pd.DataFrame]:
    """The station and its raw rows (all TRY columns) plus ``month, day, hour`` in MEZ (0..23).

    ``HH = 24`` becomes hour 0 of the next day; 31 Dec 24 h wraps to 1 Jan 0 h (cyclic year).
    """
    text = Path(path).read_text(encoding="utf-8")
    header, sep, body = text.partition("***")
    if not sep:
        raise ValueError(f"{path}: no '***' separator before the data")
    station = parse_header(header, path)
    raw = pd.read_csv(io.StringIO(body), sep=r"\s+", header=None, names=COLUMNS)
    if len(raw) != 8760 or raw[["MM", "DD", "HH"]].isna().any().any():
        raise ValueError(f"{path}: expected 8760 complete hourly rows, got {len(raw)}")
    # Any non-leap year gives the MEZ calendar; the year itself is dropped again below.
    stamp = pd.to_datetime({"year": 2001, "month": raw["MM"], "day": raw["DD"]}) + pd.to_timedelta(raw["HH"], "h")
    raw["month"] = stamp.dt.month.where(stamp.dt.year == 2001, 1).astype(int)
    raw["day"] = stamp.dt.day.where(stamp.dt.year == 2001, 1).astype(int)
    raw["hour"] = stamp.dt.hour.astype(int)
    return station, raw


def reference_hourly(station: TryStation, raw: pd.DataFrame, year: int) -> pd.DataFrame:
    """The reference year as hourly rows of calendar year ``year`` (UTC), before cleaning.

    29 Feb of a leap year repeats 28 Feb. ``wind_gust_ms`` is null (TRY has no gusts). The
    raw direction ``WR`` and pressure ``p`` ride along as evidence for the quality flags.
    """
    rows = raw
    if pd.Timestamp(year=year, month=1, day=1).is_leap_year:
        feb28 = raw[(raw["month"] == 2) & (raw["day"] == 28)].assign(day=29)
        rows = pd.concat([raw, feb28], ignore_index=True)
    mez = pd.to_datetime({"year": year, "month": rows["month"], "day": rows["day"], "hour": rows["hour"]})
    frame = pd.DataFrame({
        "point_id": station.point_id,
        "lat": station.lat,
        "lon": station.lon,
        "elevation_m": station.elevation_m,
        "ts_utc": (mez - MEZ_OFFSET).dt.tz_localize("UTC"),
        "wind_speed_ms": rows["WG"].astype(float).to_numpy(),
        "wind_gust_ms": np.nan,
        "temp_c": rows["t"].astype(float).to_numpy(),
        "source": f"{SOURCE}:{station.region:02d}",
        "gust_derived": False,
        "interpolated": False,
        "quality_flags": None,
        "WR": rows["WR"].to_numpy(),
        "p": rows["p"].astype(float).to_numpy(),
    })
    return frame.sort_values("ts_utc", ignore_index=True)


def _unit_hash(keys: np.ndarray) -> np.ndarray:
    """SplitMix64 of integer keys mapped to [0, 1): a reproducible, platform-independent draw."""
    z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def derive_gusts(speed_ms: np.ndarray, ts_utc: pd.Series, seed: int) -> np.ndarray:
    """Deterministic gusts (m/s) for hourly mean wind at 10 m.

    ``gust = round(speed * (1.35 + 0.25 d + 0.30 u) + u, 1)`` where ``d = max(0,
    sin(pi (h - 6) / 14))`` is the daytime convective share for MEZ hour ``h`` (peak at 13 h,
    zero at night) and ``u`` in [0, 1) is a SplitMix64 draw of ``(seed, month, day, hour
    MEZ)``. The factor 1.35..1.90 spans the usual gust factors over land for 10-min means;
    the ``+ u`` keeps calm hours gusting up to 1 m/s. The draw depends on the calendar hour,
    not the year, so one reference hour has one gust in every mapped year.
    """
    mez = ts_utc.dt.tz_convert(None) + MEZ_OFFSET
    hour = mez.dt.hour.to_numpy(np.int64)
    keys = (np.int64(seed) * 10**6 + mez.dt.month.to_numpy(np.int64) * 10**4
            + mez.dt.day.to_numpy(np.int64) * 100 + hour)
    u = _unit_hash(keys)
    d = np.clip(np.sin(np.pi * (hour - 6) / 14.0), 0.0, None) * ((hour >= 6) & (hour <= 20))
    return np.round(speed_ms * (1.35 + 0.25 * d + 0.30 * u) + u, 1)


def _annotate(flags: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Add the TRY evidence to wind flags: the direction code and a pressure jump in the same row."""
    if flags.empty:
        return flags
    ctx = frame[["ts_utc", "WR", "p"]].assign(p_prev=frame["p"].shift(1), p_next=frame["p"].shift(-1))
    out = flags.merge(ctx, on="ts_utc", how="left")
    wr = np.where(out["WR"] == 99, "; WR=99 (undocumented direction code)", "")
    p_jump = ((out["p"] - out["p_prev"]).abs() > PRESSURE_JUMP_HPA) & ((out["p"] - out["p_next"]).abs() > PRESSURE_JUMP_HPA)
    pressure = np.where(p_jump, "; p=" + out["p"].map("{:.1f}".format) + " hPa vs neighbours "
                        + out["p_prev"].map("{:.1f}".format) + "/" + out["p_next"].map("{:.1f}".format) + " hPa", "")
    wind = out["variable"].str.startswith("wind").to_numpy()
    out["detail"] = out["detail"] + np.where(wind, wr, "") + np.where(wind, pressure, "")
    return out[flags.columns]


def load_try_year(path: Path | str, year: int, rules: QualityRules, local_tz: str
                  ) -> tuple[TryStation, pd.DataFrame, pd.DataFrame]:
    """Parse, map onto ``year``, clean (reject spikes, interpolate <= max gap) and derive gusts.

    Returns ``(station, hourly, flags)``. Gusts are derived from the cleaned speed, so a
    rejected spike never produces a gust; ``gust_derived`` is true wherever a gust exists.
    """
    station, raw = parse_try(path)
    frame = reference_hourly(station, raw, year)
    hourly, flags = clean_hourly(frame[HOURLY_COLUMNS], rules, local_tz)
    flags = _annotate(flags, frame)
    speed = hourly["wind_speed_ms"].to_numpy(float)
    hourly["wind_gust_ms"] = derive_gusts(speed, hourly["ts_utc"], station.wmo)
    hourly["gust_derived"] = ~np.isnan(hourly["wind_gust_ms"].to_numpy(float))
    return station, hourly, flags


def load_stations(directory: Path | str) -> pd.DataFrame:
    """All stations in ``directory``: ``region, name, wmo, lat, lon, elevation_m, point_id, path``."""
    files = try_files(Path(directory))
    if not files:
        raise FileNotFoundError(f"no TRY2010_*_Jahr.dat in {directory}; run scripts/fetch_demandlib.py")
    rows = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            head = f.read(2048)
        s = parse_header(head, path)
        rows.append({**s.__dict__, "point_id": s.point_id, "path": str(path)})
    return pd.DataFrame(rows)


def default_try_dir() -> Path:
    """``$GRID_TRY_DIR`` if set, else where ``scripts/fetch_demandlib.py`` puts the files."""
    if os.environ.get("GRID_TRY_DIR"):
        return Path(os.environ["GRID_TRY_DIR"])
    return load_settings().downloads_dir / TRY_DIR_NAME


def nearest_station(stations: pd.DataFrame, lat: float, lon: float) -> pd.Series:
    """The station with the smallest great-circle distance to (lat, lon)."""
    phi1, phi2 = np.radians(lat), np.radians(stations["lat"].to_numpy(float))
    dlon = np.radians(stations["lon"].to_numpy(float) - lon)
    cos_c = np.sin(phi1) * np.sin(phi2) + np.cos(phi1) * np.cos(phi2) * np.cos(dlon)
    return stations.iloc[int(np.argmax(cos_c))]


def reference_weather(points: pd.DataFrame, year: int, rules: QualityRules, local_tz: str,
                      try_dir: Path | None = None, region: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A year of reference weather for a network's points (backfill): ``(hourly, flags)``.

    Every point (``point_id, lat, lon``) takes the cleaned reference year of one station —
    ``region`` when given (the pairing of data-sources.md §7.1, e.g. 12 = Mannheim for the
    Oberrhein networks), else the nearest station — at its own position. The station's
    elevation is kept (the heat band follows the climate the values come from), and
    ``source`` names the station, so the transplant stays visible.
    """
    stations = load_stations(try_dir or default_try_dir())
    if region is not None and region not in set(stations["region"]):
        raise ValueError(f"no TRY station for region {region}")
    chosen = [int(region) if region is not None else int(nearest_station(stations, lat, lon)["region"])
              for lat, lon in zip(points["lat"], points["lon"])]
    frames, flag_frames = [], []
    by_region = stations.set_index("region")
    for r in sorted(set(chosen)):
        _, hourly, flags = load_try_year(by_region.loc[r, "path"], year, rules, local_tz)
        mine = points[[c == r for c in chosen]]
        n = len(hourly)
        block = hourly.loc[np.tile(np.arange(n), len(mine))].reset_index(drop=True)
        block["point_id"] = np.repeat(mine["point_id"].to_numpy(), n)
        block["lat"] = np.repeat(mine["lat"].to_numpy(float), n)
        block["lon"] = np.repeat(mine["lon"].to_numpy(float), n)
        frames.append(block)
        flag_frames.append(flags)
    return pd.concat(frames, ignore_index=True)[HOURLY_COLUMNS], pd.concat(flag_frames, ignore_index=True)
