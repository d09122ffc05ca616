from datetime import UTC, date, datetime, timedelta, timezone

from grid_platform.ckw.windows import expected_slots, local_days_bounds, rfc3339_utc, split_span

TZ = "Europe/Zurich"


def test_quarter_hours_per_local_day_follow_dst():
    assert expected_slots(date(2026, 3, 29), TZ) == 92
    assert expected_slots(date(2026, 10, 25), TZ) == 100
    assert expected_slots(date(2026, 7, 14), TZ) == 96
    assert expected_slots(date(2025, 3, 30), TZ) == 92


def test_local_day_bounds_are_utc_midnights_of_the_local_day():
    start, end = local_days_bounds(date(2026, 7, 14), date(2026, 7, 14), TZ)
    assert start == datetime(2026, 7, 13, 22, tzinfo=UTC)
    assert end == datetime(2026, 7, 14, 22, tzinfo=UTC)
    start, end = local_days_bounds(date(2026, 12, 31), date(2027, 1, 1), TZ)
    assert (start.hour, end.hour) == (23, 23)


def test_split_span_respects_the_api_span_limit_and_covers_the_range():
    start, end = local_days_bounds(date(2025, 1, 1), date(2025, 12, 31), TZ)
    windows = split_span(start, end)
    assert windows[0][0] == start and windows[-1][1] == end
    assert all(e - s <= timedelta(days=30) for s, e in windows)
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
    assert len(windows) == 13
    assert split_span(end, start) == []


def test_rfc3339_utc_bounds():
    ts = datetime(2026, 9, 28, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339_utc(ts) == "2026-09-27T22:00:00Z"
