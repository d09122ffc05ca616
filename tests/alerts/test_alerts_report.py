"""Report building (alerts-and-access.md §3–§4) on hand-checked rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alerts_fixtures import Rule, tratta

from grid_platform.alerts import report
from grid_platform.store.recipients import synthetic_user_id

D0, D1 = "2026-07-01", "2026-07-02"

# One date, wind. Sums checked by hand (see the expectations below).
ROWS = [
    tratta(D0, "wind", "U1", "A", 1.0, 0.6, 0.2, "ALERT"),
    tratta(D0, "wind", "U1", "B", 2.0, 0.0, 0.5, "WARNING"),
    tratta(D0, "wind", "U2", "A", 1.5, 0.3, 0.0, "ALERT"),
    tratta(D0, "wind", "U2", "C", 0.5, 0.0, 0.0, "NORMAL"),
    tratta(D0, "wind", "U1", "D", 0.333, 0.111, 0.111, "ALERT"),
    tratta(D0, "wind", "U0", "E", 0.0, None, "n/a", None),  # no km, null and junk figures, missing level
    tratta(D0, "wind", "U1", "A", 9.0, 9.0, 0.0, "ALERT", level="line"),  # rollups are ignored
]


def test_vector_report_arithmetic_and_ordering():
    rows = report.km_rows(ROWS)
    assert len(rows) == 6
    wind = report.vector_report(rows, "wind", "ALERT")
    assert wind["totals"] == {"n_tratte": 6, "km_total": 5.33, "km_alert": 1.01, "km_warning": 0.81,
                              "pct_alert": 19.0, "pct_warning": 15.2, "risk_index": 26.6, "worst_level": "ALERT"}
    assert wind["units"] == [
        {"operational_unit": "U1", "n_tratte": 3, "km_total": 3.33, "km_alert": 0.71, "km_warning": 0.81,
         "pct_alert": 21.3, "pct_warning": 24.3, "risk_index": 33.5, "worst_level": "ALERT",
         "worst_lines": ["A", "D", "B"]},
        {"operational_unit": "U2", "n_tratte": 2, "km_total": 2.0, "km_alert": 0.3, "km_warning": 0.0,
         "pct_alert": 15.0, "pct_warning": 0.0, "risk_index": 15.0, "worst_level": "ALERT", "worst_lines": ["A"]},
        {"operational_unit": "U0", "n_tratte": 1, "km_total": 0.0, "km_alert": 0.0, "km_warning": 0.0,
         "pct_alert": None, "pct_warning": None, "risk_index": None, "worst_level": "NORMAL", "worst_lines": []},
    ]
    # ALERT group: only lines with km_alert > 0, by risk index desc.
    assert wind["top_lines"] == [
        {"line_name": "D", "operational_units": ["U1"], "km_total": 0.33, "km_alert": 0.11, "km_warning": 0.11,
         "pct_alert": 33.3, "risk_index": 50.0, "worst_level": "ALERT"},
        {"line_name": "A", "operational_units": ["U1", "U2"], "km_total": 2.5, "km_alert": 0.9, "km_warning": 0.2,
         "pct_alert": 36.0, "risk_index": 40.0, "worst_level": "ALERT"},
    ]
    # WARNING group: B (warning only) joins.
    assert [line["line_name"] for line in report.vector_report(rows, "wind", "WARNING")["top_lines"]] == ["D", "A", "B"]


def test_ties_sorted_by_name_and_worst_lines_by_km_alert():
    rows = report.km_rows([
        tratta(D0, "heat", "Zug", "L2", 2.0, 0.0, 2.0, "WARNING"),  # index 50.0, km_alert 0
        tratta(D0, "heat", "Zug", "L1", 1.0, 0.5, 0.0, "ALERT"),  # index 50.0, km_alert 0.5
        tratta(D0, "heat", "Zug", "L3", 1.0, 0.5, 0.0, "ALERT"),  # same as L1: by name
        tratta(D0, "heat", "Zug", "L4", 1.0, 0.0, 0.4, "WARNING"),  # index 20.0: 4th, cut
        tratta(D0, "heat", "Aarau", "L5", 5.0, 1.0, 2.4, "ALERT"),  # unit index 44.0 like Zug
    ])
    heat = report.vector_report(rows, "heat", "WARNING")
    assert heat["units"][0]["operational_unit"] == "Aarau"  # same index as Zug: by name
    assert heat["units"][1]["worst_lines"] == ["L1", "L3", "L2"]
    assert [line["line_name"] for line in heat["top_lines"]] == ["L1", "L2", "L3", "L5", "L4"]


def test_top_lines_capped_at_15():
    rows = report.km_rows([tratta(D0, "wind", "U", f"L{i:02d}", 1.0, i / 100, 0.0, "ALERT") for i in range(1, 21)])
    lines = report.vector_report(rows, "wind", "ALERT")["top_lines"]
    assert len(lines) == report.MAX_TOP_LINES
    assert [line["line_name"] for line in lines] == [f"L{i:02d}" for i in range(20, 5, -1)]


def test_numeric_coercion():
    assert report.km(None) == 0.0 and report.km("abc") == 0.0 and report.km(float("nan")) == 0.0
    assert report.km("1.25") == 1.25 and report.km(True) == 0.0 and report.km(float("inf")) == 0.0


def test_triggered_thresholds():
    rows = report.km_rows([tratta(D0, "wind", "U", "A", 1.0, 0.0, 0.4, "WARNING"),
                           tratta(D0, "heat", "U", "A", 1.0, 0.2, 0.0, "ALERT"),
                           tratta(D1, "heat", "U", "A", 1.0, "x", None, "ALERT")])
    assert report.triggered_hazards(Rule("u", ["wind", "heat"], "WARNING"), rows) == ["wind", "heat"]
    assert report.triggered_hazards(Rule("u", ["wind", "heat"], "ALERT"), rows) == ["heat"]
    assert report.triggered_hazards(Rule("u", ["wind"], "ALERT"), rows) == []
    assert report.triggered_hazards(Rule("u", ["wind"], "bogus"), rows) == []  # unknown threshold: ALERT floor
    assert report.triggered_hazards(Rule("u", ["wind", "heat"], "bogus"), rows) == ["heat"]


def test_recipient_fallback_and_merge():
    rows = report.km_rows([tratta(D0, "wind", "U", "A", 1.0, 0.5, 0.5, "ALERT"),
                           tratta(D0, "heat", "U", "B", 1.0, 0.0, 0.5, "WARNING")])
    r1 = Rule("u1", ["wind"], "ALERT", recipients="a@x.ch, B@y.ch")
    r2 = Rule("u2", ["heat"], "WARNING", recipients="b@y.ch;A@X.CH")  # same set, other order and case
    r3 = Rule("u3", ["wind"], "ALERT")  # owner's settings
    r4 = Rule("u4", ["wind", "heat"], "ALERT", recipients="not-an-address")  # nothing valid: owner's sub
    r5 = Rule("u5", ["heat"], "ALERT", recipients="c@z.ch")  # heat has no ALERT km: not triggered
    r6 = Rule("u3", ["heat"], "WARNING", recipients="")  # same settings group as r3
    groups = report.recipient_groups([r1, r2, r3, r4, r5, r6], rows, {"u3": "ops@z.ch x", "u4": None})
    pair = synthetic_user_id(["a@x.ch", "b@y.ch"])
    ops = synthetic_user_id(["ops@z.ch"])
    assert [(g.key, g.email_recipients, g.threshold, g.hazards, g.owners) for g in groups] == [
        (pair, ["a@x.ch", "B@y.ch"], "WARNING", ["heat", "wind"], ["u1", "u2"]),
        (ops, ["ops@z.ch"], "WARNING", ["heat", "wind"], ["u3"]),
        ("u4", [], "ALERT", ["wind"], ["u4"]),
    ]
    assert groups[0].rule_ids == [r1.id, r2.id]
    assert [g.key for g in report.owner_groups([r1, r2, r3, r5], rows, ["u2", "u5"])] == ["u2"]


def test_report_facts_with_empty_days():
    rows = report.km_rows([tratta(D0, "wind", "U", "A", 1.0, 0.5, 0.0, "ALERT"),
                           tratta("2026-06-30", "wind", "U", "A", 1.0, 1.0, 0.0, "ALERT")], [D0, D1])
    group = report.Group(key="u9", email_recipients=[], threshold="ALERT", hazards=["wind", "heat"])
    moment = datetime(2026, 7, 1, 10, 5, tzinfo=timezone(timedelta(hours=2)))
    facts = report.report_facts(group, rows, network_id="ckw", dates=[D0, D1], period=D0, generated_at=moment,
                                app_url="https://grid.example")
    empty = {"n_tratte": 0, "km_total": 0.0, "km_alert": 0.0, "km_warning": 0.0, "pct_alert": None,
             "pct_warning": None, "risk_index": None, "worst_level": "NORMAL"}
    assert {k: v for k, v in facts.items() if k != "days"} == {
        "facts_version": "1.0", "scenario": "grid_risk_report", "period": D0, "dates": [D0, D1],
        "network_id": "ckw", "threshold": "ALERT", "risk_types": ["heat", "wind"],
        "generated_at": "2026-07-01T08:05:00Z", "app_url": "https://grid.example", "email_recipients": []}
    assert [d["date"] for d in facts["days"]] == [D0, D1]
    assert [[v["risk_vector"] for v in d["vectors"]] for d in facts["days"]] == [["heat", "wind"]] * 2
    assert facts["days"][0]["vectors"][0] == {"risk_vector": "heat", "units": [], "top_lines": [], "totals": empty}
    assert facts["days"][0]["vectors"][1]["totals"]["km_alert"] == 0.5  # the 30 June row is outside the dates
    assert facts["days"][1]["vectors"][1] == {"risk_vector": "wind", "units": [], "top_lines": [], "totals": empty}
