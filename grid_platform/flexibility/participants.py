"""The demo energy-community registry and its 15-minute consumption, from the SimBench profiles.

Profiles are the real SimBench 1.6.3 load and PV profiles (data-sources.md §3: the complete
data set, 35,136 quarter-hours of the year 2016), read from the CSV files shipped in the
wheel (the same columns ``simbench.get_simbench_net(code).profiles`` holds, without building
a network). A participant gets, deterministically for a seed:

* a load profile of its kind (households ``H0-*``, businesses ``G*``, farms ``L*``) scaled to
  an annual consumption (kWh per quarter-hour = profile value / profile annual sum × annual
  kWh), and moved by a whole number of weeks so members sharing a profile differ;
* optionally PV (a ``PV1``–``PV8`` profile, kW per kWp, times the installed kWp).

Any date maps to the profile year by day of year, shifted by at most three days so weekdays
match (load shapes differ on weekends). Profiles are read as local wall-clock time: a local
day therefore has 92 or 100 quarter-hours on the DST days (the skipped hour has no reading,
the repeated hour repeats the profile values). Energies are quantised to the meter
resolution of 1 Wh.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

PROFILE_YEAR = 2016
QUARTERS_PER_DAY = 96
PROFILE_DAYS = 366
PROFILE_QUARTERS = PROFILE_DAYS * QUARTERS_PER_DAY  # 35,136
METER_DECIMALS = 3  # kWh to 1 Wh

HOUSEHOLD_PROFILES = ("H0-A", "H0-B", "H0-C", "H0-G", "H0-H", "H0-L")
BUSINESS_PROFILES = ("G0-A", "G1-A", "G1-B", "G1-C", "G2-A", "G3-A", "G4-A", "G4-B", "G5-A", "G6-A")
FARM_PROFILES = ("L0-A", "L1-A", "L2-A")
PV_PROFILES = tuple(f"PV{i}" for i in range(1, 9))

# kind: (share of members, profiles, median annual kWh, lognormal sigma, kWh bounds,
#        share with PV, kWp bounds)
KINDS = {
    "household": (0.80, HOUSEHOLD_PROFILES, 3500.0, 0.35, (1200.0, 9000.0), 0.40, (5.0, 15.0)),
    "business": (0.15, BUSINESS_PROFILES, 15000.0, 0.60, (3000.0, 80000.0), 0.40, (20.0, 80.0)),
    "farm": (0.05, FARM_PROFILES, 12000.0, 0.40, (4000.0, 40000.0), 0.50, (15.0, 60.0)),
}
NO_SMART_METER_SHARE = 0.04  # best effort: these members have no device
MANAGED_ACCOUNT_SHARE = 0.30  # businesses/farms reached through their owner's account


def simbench_dir() -> Path:
    """The complete data set of the installed wheel (``simbench.complete_data_path(0)``).

    Located without importing simbench, whose import (pandapower) takes seconds.
    """
    spec = importlib.util.find_spec("simbench")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("simbench is not installed: the flexibility profiles come from it")
    return Path(spec.origin).parent / "networks" / "1-complete_data-mixed-all-0-sw"


def _read_profiles(file: str, columns: dict[str, str]) -> pd.DataFrame:
    frame = pd.read_csv(simbench_dir() / file, sep=";", usecols=["time", *columns])
    if len(frame) != PROFILE_QUARTERS:
        raise ValueError(f"{file}: expected {PROFILE_QUARTERS} quarter-hours, got {len(frame)}")
    return frame.drop(columns="time").rename(columns=columns).astype("float64")


@lru_cache(maxsize=1)
def load_profiles() -> pd.DataFrame:
    """Active-power load profiles (relative), one column per profile name, 35,136 rows."""
    names = (*HOUSEHOLD_PROFILES, *BUSINESS_PROFILES, *FARM_PROFILES)
    return _read_profiles("LoadProfile.csv", {f"{n}_pload": n for n in names})


@lru_cache(maxsize=1)
def pv_profiles() -> pd.DataFrame:
    """PV feed-in per kWp (kW), one column per profile, 35,136 rows."""
    return _read_profiles("RESProfile.csv", {n: n for n in PV_PROFILES})


@dataclass(frozen=True)
class Participant:
    participant_id: str
    community_id: str
    user_id: str | None
    owner_user_id: str
    device_id: str | None
    kind: str
    profile: str
    annual_kwh: float
    week_shift: int
    pv_profile: str | None
    pv_kwp: float

    @property
    def recipient(self) -> str:
        """The account nudges go to: the member's own, else its owner's (§5.3)."""
        return self.user_id or self.owner_user_id


@dataclass(frozen=True)
class Membership:
    community_id: str
    device_id: str | None


def _rng(seed: int, community_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}|{community_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def generate_community(community_id: str, size: int, seed: int) -> list[Participant]:
    """``size`` members of ``community_id``; the same (community, size, seed) gives the same list."""
    if size < 1:
        raise ValueError(f"a community needs at least one member, got {size}")
    rng = _rng(seed, community_id)
    kinds = list(KINDS)
    draws = rng.choice(len(kinds), size=size, p=[KINDS[k][0] for k in kinds])
    members = []
    for i, k in enumerate(draws):
        kind = kinds[k]
        _, profiles, median, sigma, (lo, hi), pv_share, (kwp_lo, kwp_hi) = KINDS[kind]
        pid = f"{community_id}-p{i + 1:04d}"
        annual = float(np.clip(median * np.exp(sigma * rng.standard_normal()), lo, hi))
        has_pv = rng.random() < pv_share
        kwp = round(float(rng.uniform(kwp_lo, kwp_hi)), 1) if has_pv else 0.0
        managed = kind != "household" and rng.random() < MANAGED_ACCOUNT_SHARE
        owner = f"{pid}-owner" if managed else f"{pid}-user"
        members.append(Participant(
            participant_id=pid,
            community_id=community_id,
            user_id=None if managed else owner,
            owner_user_id=owner,
            device_id=None if rng.random() < NO_SMART_METER_SHARE else f"{pid}-meter",
            kind=kind,
            profile=str(profiles[rng.integers(len(profiles))]),
            annual_kwh=round(annual, 1),
            week_shift=int(rng.integers(-3, 4)),
            pv_profile=str(PV_PROFILES[rng.integers(len(PV_PROFILES))]) if has_pv else None,
            pv_kwp=kwp,
        ))
    return members


class ParticipantRegistry:
    """Communities and their members, with paging (§5.3) and membership look-ups (§2 step 1)."""

    def __init__(self, participants: list[Participant]):
        self.participants = list(participants)
        self._by_community: dict[str, list[Participant]] = {}
        self._by_user: dict[str, Participant] = {}
        self._by_device: dict[str, Participant] = {}
        self._by_id = {p.participant_id: p for p in self.participants}
        for p in self.participants:
            self._by_community.setdefault(p.community_id, []).append(p)
            self._by_user.setdefault(p.owner_user_id, p)
            if p.user_id:
                self._by_user[p.user_id] = p
            if p.device_id:
                self._by_device[p.device_id] = p

    @classmethod
    def demo(cls, communities: dict[str, int], seed: int) -> ParticipantRegistry:
        return cls([p for cid, size in communities.items() for p in generate_community(cid, size, seed)])

    def communities(self, offset: int = 0, limit: int = 100) -> list[str]:
        return sorted(self._by_community)[offset:offset + limit]

    def members(self, community_id: str, offset: int = 0, limit: int = 100) -> list[Participant]:
        return self._by_community.get(community_id, [])[offset:offset + limit]

    def all_members(self, community_id: str) -> list[Participant]:
        return list(self._by_community.get(community_id, []))

    def membership(self, user_id: str) -> Membership | None:
        p = self._by_user.get(user_id)
        return None if p is None else Membership(p.community_id, p.device_id)

    def by_device(self, device_id: str) -> Participant | None:
        return self._by_device.get(device_id)

    def by_participant(self, participant_id: str) -> Participant | None:
        return self._by_id.get(participant_id)


def iter_pages(fetch, page_size: int = 100) -> Iterator:
    """Items of a paged listing ``fetch(offset, limit)`` until a short page."""
    offset = 0
    while True:
        page = fetch(offset, page_size)
        yield from page
        if len(page) < page_size:
            return
        offset += page_size


# --- consumption ------------------------------------------------------------------------------


def local_day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """UTC start and end of the local day (23, 24 or 25 hours long)."""
    start = pd.Timestamp(day).tz_localize(tz).tz_convert("UTC")
    end = pd.Timestamp(day + timedelta(days=1)).tz_localize(tz).tz_convert("UTC")
    return start.to_pydatetime(), end.to_pydatetime()


def quarter_hours(start: datetime, end: datetime) -> pd.DatetimeIndex:
    """UTC quarter-hour starts in ``[start, end)``."""
    return pd.date_range(pd.Timestamp(start).tz_convert("UTC").ceil("15min"), pd.Timestamp(end).tz_convert("UTC"),
                         freq="15min", inclusive="left", name="ts")


def _profile_positions(index: pd.DatetimeIndex, tz: str) -> np.ndarray:
    """Row of the profile year for each UTC quarter-hour, read at its local wall-clock time."""
    local = index.tz_convert(tz)
    days = np.asarray(local.dayofyear, dtype=np.int64) - 1
    # Same weekday as the date, within three days of the same day of year.
    profile_weekday = (pd.Timestamp(PROFILE_YEAR, 1, 1).dayofweek + days) % 7
    shift = (np.asarray(local.dayofweek) - profile_weekday + 3) % 7 - 3
    day = (days + shift) % PROFILE_DAYS
    slot = (np.asarray(local.hour) * 60 + np.asarray(local.minute)) // 15
    return day * QUARTERS_PER_DAY + slot


def consumption_matrix(participants: list[Participant], index: pd.DatetimeIndex, tz: str) -> np.ndarray:
    """kWh per quarter-hour, shape (len(index), len(participants)), quantised to 1 Wh."""
    profiles = load_profiles()
    values = profiles.to_numpy()
    column = {name: i for i, name in enumerate(profiles.columns)}
    annual_sum = values.sum(axis=0)
    base = _profile_positions(index, tz)
    out = np.empty((len(index), len(participants)), dtype=np.float64)
    for j, p in enumerate(participants):
        c = column[p.profile]
        rows = (base + p.week_shift * 7 * QUARTERS_PER_DAY) % PROFILE_QUARTERS
        out[:, j] = values[rows, c] / annual_sum[c] * p.annual_kwh
    return np.round(out, METER_DECIMALS)


def production_matrix(participants: list[Participant], index: pd.DatetimeIndex, tz: str) -> np.ndarray:
    """PV kWh per quarter-hour, shape (len(index), len(participants)); 0 without PV."""
    pv = pv_profiles()
    values = pv.to_numpy()
    column = {name: i for i, name in enumerate(pv.columns)}
    rows = _profile_positions(index, tz)
    out = np.zeros((len(index), len(participants)), dtype=np.float64)
    for j, p in enumerate(participants):
        if p.pv_profile and p.pv_kwp > 0:
            out[:, j] = values[rows, column[p.pv_profile]] * p.pv_kwp * 0.25
    return np.round(out, METER_DECIMALS)


def device_consumption(participants: list[Participant], start: datetime, end: datetime, tz: str,
                       resolution: str = "15min") -> pd.DataFrame:
    """Long table ``ts, device_id, consumption_kwh`` of the members with a device, ``[start, end)``.

    ``resolution`` ``15min`` or ``1h`` (UTC hours, the sum of their quarter-hours; Zurich offsets
    are whole hours, so these are local hours too).
    """
    metered = [p for p in participants if p.device_id]
    index = quarter_hours(start, end)
    matrix = consumption_matrix(metered, index, tz)
    frame = pd.DataFrame(matrix, index=index, columns=[p.device_id for p in metered])
    if resolution == "1h":
        frame = frame.groupby(frame.index.floor("h")).sum().round(METER_DECIMALS)
        frame.index.name = "ts"
    elif resolution != "15min":
        raise ValueError(f"resolution must be '15min' or '1h', got {resolution!r}")
    long = frame.rename_axis(columns="device_id").stack().rename("consumption_kwh").reset_index()
    return long.sort_values(["device_id", "ts"], kind="stable").reset_index(drop=True)


def community_exchange(participants: list[Participant], start: datetime, end: datetime, tz: str,
                       resolution: str = "1h") -> pd.DataFrame:
    """``ts, consumption_kwh, production_kwh, net_exchange_kwh`` of a community (net > 0: surplus)."""
    index = quarter_hours(start, end)
    frame = pd.DataFrame({
        "consumption_kwh": consumption_matrix(participants, index, tz).sum(axis=1),
        "production_kwh": production_matrix(participants, index, tz).sum(axis=1),
    }, index=index)
    if resolution == "1h":
        frame = frame.groupby(frame.index.floor("h")).sum()
        frame.index.name = "ts"
    elif resolution != "15min":
        raise ValueError(f"resolution must be '15min' or '1h', got {resolution!r}")
    frame["net_exchange_kwh"] = frame["production_kwh"] - frame["consumption_kwh"]
    return frame.round(METER_DECIMALS).reset_index()

