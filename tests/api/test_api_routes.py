"""Grid read routes (grid-api.md §2–4) over published fixture networks."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pandas as pd
import pytest
from grid_api_fixtures import (
    D0,
    D1,
    D2,
    DM1,
    TODAY,
    publish_risk,
    publish_topology,
    read_paths,
    risk_tables,
    segment_id,
    write_tables,
)

from grid_platform.publish import publish

PROTECTED = read_paths() + ["/api/me", "/api/alert-rules", "/api/notification-settings", "/api/ping"]


@pytest.mark.parametrize("path", PROTECTED)
def test_every_route_with_valid_expired_forged_and_missing_tokens(client, token, path):
    assert client.get(path, headers=token()).status_code == 200
    expired = client.get(path, headers=token(expires_in=-5))
    assert expired.status_code == 401 and expired.json() == {"detail": "Token has expired"}
    forged = client.get(path, headers=token(secret="forged-secret-with-plenty-of-bytes!!"))
    assert forged.status_code == 401 and forged.json()["detail"].startswith("Invalid token: ")
    missing = client.get(path)
    assert missing.status_code == 401 and missing.json() == {"detail": "Missing authentication token"}
    assert missing.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/alert-rules"), ("PATCH", "/api/alert-rules/5b0c1f5e-4f0e-4b7e-9a53-5c7fbb8e9f2a"),
    ("DELETE", "/api/alert-rules/5b0c1f5e-4f0e-4b7e-9a53-5c7fbb8e9f2a"), ("PUT", "/api/notification-settings"),
    ("GET", "/api/nowhere"), ("GET", "/api/grid/ckw/no-such-route"), ("GET", "/"),
])
def test_missing_token_is_401_before_routing(client, token, method, path):
    response = client.request(method, path)
    assert response.status_code == 401 and response.json() == {"detail": "Missing authentication token"}
    if method == "GET" and "nowhere" in path:
        assert client.get(path, headers=token()).status_code == 404


def test_token_header_wins_over_authorization(client, token):
    good = token()["Authorization"].removeprefix("Bearer ")
    response = client.get("/api/ping", headers={"X-Auth-Request-Access-Token": good,
                                                "Authorization": "Bearer garbage"})
    assert response.json() == {"ok": True}
    assert client.get("/api/ping", headers={"Authorization": f"Basic {good}"}).status_code == 401


def test_public_paths(client):
    for path in ("/health", "/api/docs", "/api/redoc", "/api/openapi.json"):
        assert client.get(path).status_code == 200
    assert "/api/ping" not in client.get("/api/openapi.json").json()["paths"]


@pytest.fixture
def backend_spy(client, monkeypatch):
    store = client.app.state.reader.store
    touched = []
    for name in ("entity", "run", "resolve"):
        original = getattr(store, name)
        monkeypatch.setattr(store, name, lambda *a, _o=original, _n=name, **k: touched.append(_n) or _o(*a, **k))
    return touched


@pytest.mark.parametrize("path", read_paths("ewl") + ["/api/grid/ewl/risks?dates=not-a-date"])
def test_cross_network_is_403_without_touching_the_backend(client, token, backend_spy, path):
    response = client.get(path, headers=token(networks=("ckw",)))
    assert response.status_code == 403
    assert response.json() == {"detail": "network_id mismatch: user does not belong to the requested DSO"}
    assert backend_spy == []


def test_several_dso_organisations(client, token):
    both = token(networks=("ewl", "ckw"))
    assert client.get(f"/api/grid/ckw/risks?dates={D0}", headers=both).status_code == 200
    assert client.get(f"/api/grid/ewl/risks?dates={D0}", headers=both).status_code == 200
    assert client.get(f"/api/grid/other/risks?dates={D0}", headers=both).status_code == 403
    me = client.get("/api/me", headers=both)
    assert me.status_code == 403 and me.json()["detail"] == "ambiguous DSO organization membership: name the network"
    none = client.get(f"/api/grid/ckw/risks?dates={D0}", headers=token(networks=()))
    assert none.json() == {"detail": "missing DSO organization membership"}


def test_service_scopes(client, service_token):
    for network in ("ckw", "ewl", "never-published"):
        assert client.get(f"/api/grid/{network}/risks?dates={D0}", headers=service_token("grid.read")).status_code == 200
    assert client.get("/api/grid/ckw/shapes", headers=service_token("grid.admin")).status_code == 200
    denied = client.get("/api/grid/ckw/shapes", headers=service_token("grid.alerts.read"))
    assert denied.status_code == 403 and denied.json() == {"detail": "service missing grid.read scope"}
    me = client.get("/api/me", headers=service_token("grid.admin"))
    assert me.status_code == 403 and me.json() == {"detail": "missing DSO organization membership"}


def test_me_and_locale(client, token):
    user = client.get("/api/me", headers=token(sub="u-9", name="A. Operator", preferred_username="aop",
                                               locale="de-CH", email="op@example.ch")).json()["user"]
    assert user == {"sub": "u-9", "email": "op@example.ch", "name": "A. Operator", "preferred_username": "aop",
                    "locale": "de", "network_id": "ckw", "organization": "ckw"}
    headers = {**token(), "Accept-Language": "fr-CH;q=0.4, it;q=0.9, *"}
    assert client.get("/api/me", headers=headers).json()["user"]["locale"] == "it"
    bare = client.get("/api/me", headers=token()).json()["user"]
    assert bare["locale"] is None and bare["email"] is None  # a missing email claim is not an error


def get(client, token, path, **params):
    response = client.get(f"/api/grid/ckw/{path}", headers=token(), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_wind_map(client, token):
    fc = get(client, token, "wind/map")
    assert fc["type"] == "FeatureCollection"
    props = [f["properties"] for f in fc["features"]]
    assert {p["conductor_type"] for p in props} == {"overhead_bare", "overhead_insulated"}
    assert [p["date"] for p in props] == sorted((p["date"] for p in props), reverse=True)
    assert "feature_geojson" not in props[0] and "geom" not in props[0]
    nord_a = [p for p in props if p["line_name"] == "Linea Nord" and p["gust_excess"] == 13.0]
    assert nord_a and all(p["municipality"] == "Sursee LU" for p in nord_a)  # feature props win
    alerts = get(client, token, "wind/map", dates=[str(D0)], risk_level=["ALERT", "WARNING"])
    assert sorted(f["properties"]["risk_level"] for f in alerts["features"]) == ["ALERT", "WARNING"]
    by_substation = get(client, token, "wind/map", substation_name="UW Emmen")
    assert {f["properties"]["line_name"] for f in by_substation["features"]} == {"Linea Sud"}
    assert get(client, token, "wind/map", operational_unit="x') OR 1=1 --")["features"] == []


def test_wind_bosco_and_heat_map(client, token):
    bosco = get(client, token, "wind/bosco", dates=[str(D0)])
    assert {f["properties"]["line_name"] for f in bosco["features"]} == {"Linea Nord"}
    assert all(f["properties"]["is_vegetated_zone"] is True for f in bosco["features"])
    heat = get(client, token, "heat/map")
    props = [f["properties"] for f in heat["features"]]
    assert {p["conductor_type"] for p in props} == {"underground_cable"}
    assert {p["consecutive_heat_days"] for p in props} == {0, 2} and "gust_excess" not in props[0]


def test_alert_distribution_defaults_to_the_horizon(client, token):
    assert get(client, token, "wind/alert-distribution") == [
        {"risk_level": "ALERT", "events": 2}, {"risk_level": "NORMAL", "events": 2},
        {"risk_level": "WARNING", "events": 2}]
    assert get(client, token, "wind/alert-distribution", dates=[str(DM1)]) == [{"risk_level": "NORMAL", "events": 1}]
    assert get(client, token, "heat/alert-distribution", line_name="Kabel Ost") == [
        {"risk_level": "NORMAL", "events": 1}, {"risk_level": "WARNING", "events": 1}]


def test_trends(client, token):
    assert get(client, token, "wind/trend") == [
        {"date": str(DM1), "value": 3.0}, {"date": str(D0), "value": 13.0}, {"date": str(D1), "value": 8.0},
        {"date": str(D2), "value": None}]
    heat = get(client, token, "heat/trend")
    assert [p["date"] for p in heat] == [str(TODAY + timedelta(days=k)) for k in range(-3, 3)]
    assert heat[-1]["value"] == 26.0


def test_substations_filters_and_tiles(client, token):
    substations = client.get("/api/grid/ckw/substations/map", headers=token())
    assert substations.headers["x-skipped-features"] == "1"
    feature, = substations.json()["features"]
    assert feature["geometry"]["type"] == "Point"
    assert feature["properties"]["label"] == "Unterwerk Emmen — Emmen" and feature["properties"]["latitude"] == 47.07
    assert get(client, token, "filters") == {
        "parent_substations": ["UW Emmen", "UW Sursee"], "lines": ["Kabel Ost", "Linea Nord", "Linea Sud"],
        "operational_units": ["Emmen", "Sursee"], "municipalities": ["Emmen", "Sursee"],
        "extent_min_lng": 8.10, "extent_min_lat": 47.06, "extent_max_lng": 8.30, "extent_max_lat": 47.19}
    tiles = get(client, token, "tile-index")
    assert set(tiles) == {"items", "limit", "offset", "count"} and tiles["limit"] == 500
    assert [t["tile_id"] for t in tiles["items"]] == ["tile_0_0", "tile_1_0", "tile_0_1"]
    assert tiles["items"][0]["tile_bbox_geojson"]["type"] == "Polygon" and tiles["count"] == 3


def test_shapes(client, token):
    response = client.get("/api/grid/ckw/shapes", headers=token())
    assert response.headers["x-skipped-features"] == "3"
    features = response.json()["features"]
    assert len(features) == 5
    props = {f["properties"]["asset_key"]: f["properties"] for f in features}
    assert props["Linea Nord"]["line_name"] == "Linea Nord"  # stored feature properties are discarded
    assert "tile_ids" not in props["Linea Nord"] and props["S1"]["line_name"] is None
    assert props["J1"]["thermal_tier"] == "unmodelled" and props["J1"]["anno_posa"] == 1998
    assert len(props["Linea Nord"]) == 29
    only = get(client, token, "shapes", asset_type=["substation", "joint"])
    assert {f["properties"]["asset_type"] for f in only["features"]} == {"substation", "joint"}
    tiled = get(client, token, "shapes", tile_id=["tile_0_0"])
    assert {f["properties"]["asset_key"] for f in tiled["features"]} == {"Linea Nord"}
    assert get(client, token, "shapes", asset_type="x') OR 1=1 --")["features"] == []


def test_tree_strike_spans(client, token):
    response = client.get("/api/grid/ckw/tree-strike-spans", headers=token())
    assert response.headers["x-skipped-features"] == "1"
    features = response.json()["features"]
    assert [f["properties"]["span_id"] for f in features] == ["span-001", "span-002"]
    assert features[1]["properties"]["tier"] == "high"  # row columns only
    assert [f["properties"]["span_id"] for f in get(client, token, "tree-strike-spans", tile_id="tile_1_0")["features"]] == ["span-002"]


def test_risks(client, token):
    page = get(client, token, "risks", dates=[str(D0), str(D1)])
    assert set(page) == {"items", "limit", "offset", "count"} and page["count"] == 3
    assert [(r["date"], r["risk_vector"], r["risk_level"]) for r in page["items"]] == [
        (str(D0), "heat", "WARNING"), (str(D0), "wind", "ALERT"), (str(D1), "wind", "WARNING")]
    first = page["items"][1]
    assert first["segment_id"] == segment_id("ckw", "Linea Nord", "overhead_bare", "Sursee")
    assert first["metrics"]["gust_excess"] == 13.0 and first["risk_color_hex"] == "#D00000"
    wind = get(client, token, "risks", dates=str(D0), risk_vector="wind")
    assert [r["risk_vector"] for r in wind["items"]] == ["wind"]
    ignored = get(client, token, "risks", dates=str(D0), risk_vector="wind", operational_unit="Nowhere",
                  line_name="x", substation_name="y", whatever="1")
    assert ignored == wind  # unknown parameters are ignored


def test_risks_now_and_8h(client, token):
    now = get(client, token, "risks-now")["items"]
    assert len(now) == 1 and now[0]["observed_at"].endswith("+00:00")
    windows = get(client, token, "risks-8h", dates=str(D0))["items"]
    assert [(w["slot"], w["risk_vector"]) for w in windows] == [(0, "heat"), (0, "wind"), (1, "heat"), (1, "wind"),
                                                                (2, "heat")]
    assert windows[0]["window_start"] == f"{D0}T00:00:00"
    assert [w["slot"] for w in get(client, token, "risks-8h", dates=str(D0), slot=[2])["items"]] == [2]


def test_trendline(client, token):
    items = get(client, token, "trendline", date_from=str(DM1), date_to=str(D0))["items"]
    assert [(i["date"], i["risk_vector"]) for i in items] == [(str(DM1), "wind"), (str(D0), "heat"), (str(D0), "wind")]
    assert items[2] == {"date": str(D0), "risk_vector": "wind", "alert_count": 1, "warning_count": 0,
                        "total_segments": 2, "risk_ratio": 0.5, "day_risk_level": "WARNING"}
    heat = get(client, token, "trendline", date_from=str(D0), date_to=str(D2), risk_vector="heat")["items"]
    assert [i["date"] for i in heat] == [str(D0), str(D1)]


def test_risk_km_levels(client, token):
    tratta = get(client, token, "risk-km", dates=str(D0))["items"]
    assert [(r["risk_vector"], r["line_name"]) for r in tratta] == [
        ("heat", "Kabel Ost"), ("wind", "Linea Nord"), ("wind", "Linea Sud")]  # index desc within vector
    assert tratta[1]["risk_index"] == 79.17 and tratta[1]["level"] == "tratta" and "n_lines" not in tratta[1]
    units = get(client, token, "risk-km", dates=str(D0), level="unit", risk_vector="wind")["items"]
    assert [(u["operational_unit"], u["n_tratte"], u["n_lines"], u["worst_level"]) for u in units] == [
        ("Sursee", 1, 1, "ALERT"), ("Emmen", 1, 1, "NORMAL")]
    lines = get(client, token, "risk-km", dates=[str(D0), str(D1)], level="line", operational_unit="Sursee")["items"]
    assert [(r["date"], r["line_name"], r["operational_units"], r["risk_index"]) for r in lines] == [
        (str(D0), "Linea Nord", "Sursee", 79.17), (str(D1), "Linea Nord", "Sursee", 29.17)]
    assert set(lines[0]) >= {"n_units", "n_tratte", "parent_substation_name"} and "segment_id" not in lines[0]
    alert_only = get(client, token, "risk-km", dates=[str(D0), str(D1)], level="unit", min_level="ALERT")["items"]
    assert [(r["date"], r["operational_unit"]) for r in alert_only] == [(str(D0), "Sursee")]
    warning = get(client, token, "risk-km", dates=str(D0), min_level="WARNING")["items"]
    assert {r["worst_level"] for r in warning} == {"ALERT", "WARNING"}


def test_summary(client, token, published_dir):
    summary = get(client, token, "summary")
    assert summary["network_id"] == "ckw" and summary["dates"] == [str(D0), str(D1), str(D2)]
    assert summary["generated_at"].endswith("+00:00")
    wind0 = next(v for v in summary["vectors"] if v["date"] == str(D0) and v["risk_vector"] == "wind")
    assert wind0 == {"risk_vector": "wind", "date": str(D0), "day_risk_level": "WARNING", "alert_count": 1,
                     "warning_count": 0, "total_segments": 2, "risk_ratio": 0.5, "km_total": 2.0,
                     "km_alert": 0.7, "km_warning": 0.5, "risk_index": 47.5}
    assert [(v["date"], v["risk_vector"]) for v in summary["vectors"]] == [
        (str(D0), "heat"), (str(D0), "wind"), (str(D1), "heat"), (str(D1), "wind"), (str(D2), "wind")]


@pytest.mark.parametrize("path, loc", [
    ("risks", ["query", "dates"]),
    ("risks?dates=2026-02-30", ["query", "dates", 0]),
    ("risks?dates=20260701", ["query", "dates", 0]),
    (f"risks?dates={D0}&risk_vector=fire", ["query", "risk_vector", 0]),
    ("risks-8h?" + "&".join(f"dates={D0}" for _ in range(8)), ["query", "dates"]),
    (f"risks-8h?dates={D0}&slot=3", ["query", "slot", 0]),
    (f"risk-km?dates={D0}&level=feeder", ["query", "level"]),
    (f"risk-km?dates={D0}&min_level=NORMAL", ["query", "min_level"]),
    ("shapes?tile_id=tile_1", ["query", "tile_id", 0]),
    ("tree-strike-spans?tile_id=tile_1_2_3", ["query", "tile_id", 0]),
    (f"trendline?date_from={D0}", ["query", "date_to"]),
    (f"trendline?date_from={D1}&date_to={D0}", ["query", "date_to"]),
    (f"risks?dates={D0}&limit=0", ["query", "limit"]),
    (f"risks?dates={D0}&limit=10001", ["query", "limit"]),
    (f"risks?dates={D0}&offset=-1", ["query", "offset"]),
])
def test_invalid_parameters_are_422(client, token, path, loc):
    response = client.get(f"/api/grid/ckw/{path}", headers=token())
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail[0]["loc"] == loc and detail[0]["msg"]


def test_numbers_are_json_numbers_even_from_decimal_or_text(fresh_app, tmp_path, token):
    tables = risk_tables("ckw", TODAY)
    km = tables["risk_km.parquet"]
    km["km_total"] = [Decimal(str(v)) for v in km["km_total"]]
    km["km_alert"] = km["km_alert"].astype(str)  # numeric text as upstream leaked from Postgres
    publish_risk(tmp_path / "published", "ckw", TODAY, replace={"risk_km.parquet": km})
    client = fresh_app()
    row = client.get("/api/grid/ckw/risk-km", params={"dates": str(D0)}, headers=token()).json()["items"][1]
    assert row["km_total"] == 1.2 and row["km_alert"] == 0.7
    unit = client.get("/api/grid/ckw/risk-km", params={"dates": str(D0), "level": "unit"},
                      headers=token()).json()["items"][0]
    assert isinstance(unit["km_total"], float)


def test_backend_failures_are_502_with_the_label_only(fresh_app, tmp_path, token):
    root = tmp_path / "published"
    broken = risk_tables("ckw", TODAY)
    del broken["risks_now.parquet"]  # a publication without the nowcast table
    broken["risks_8h.parquet"] = broken["risks_8h.parquet"].drop(columns=["slot"])  # unexpected shape
    broken["trend.parquet"] = {"not": "a parquet file"}  # corrupt file
    publish(root, "risk", "ckw", write_tables(broken))
    client = fresh_app()
    for path, label in (("risks-now", "risks_now"), (f"risks-8h?dates={D0}", "risks_8h"), ("wind/trend", "wind_trend")):
        response = client.get(f"/api/grid/ckw/{path}", headers=token())
        assert response.status_code == 502 and response.json() == {"detail": f"upstream error: {label}"}
    assert client.get(f"/api/grid/ckw/risks?dates={D0}", headers=token()).status_code == 200


def test_unexpected_value_shape_is_502(fresh_app, tmp_path, token):
    tables = risk_tables("ckw", TODAY)
    tables["risks.parquet"]["metrics"] = "{broken json"
    publish_risk(tmp_path / "published", "ckw", TODAY, replace={"risks.parquet": tables["risks.parquet"]})
    response = fresh_app().get(f"/api/grid/ckw/risks?dates={D0}", headers=token())
    assert response.status_code == 502 and response.json() == {"detail": "upstream error: risks"}


def test_unreadable_publication_is_502_not_empty(fresh_app, tmp_path, token):
    publication = publish_risk(tmp_path / "published", "ckw", TODAY)
    (publication.path / "manifest.json").write_text("{truncated")
    client = fresh_app()
    response = client.get(f"/api/grid/ckw/risks?dates={D0}", headers=token())
    assert response.status_code == 502 and response.json() == {"detail": "upstream error: risks"}
    health = client.get("/health").json()
    assert health["status"] == "degraded" and health["publications"]["datasets"]["risk"]["unreadable"] == 1


def test_no_publication_root_is_503(fresh_app, token):
    client = fresh_app()
    response = client.get(f"/api/grid/ckw/risks?dates={D0}", headers=token())
    assert response.status_code == 503 and response.json() == {"detail": "grid data backend not configured"}
    assert client.get("/health").json()["publications"]["readable"] is False


def test_network_never_published_answers_empty(fresh_app, tmp_path, token):
    publish_topology(tmp_path / "published", "ewl")  # the root exists, "ckw" has nothing
    client = fresh_app()
    expected = {
        "wind/map": {"type": "FeatureCollection", "features": []}, "wind/trend": [], "wind/alert-distribution": [],
        f"risks?dates={D0}": {"items": [], "limit": 10000, "offset": 0, "count": 0},
        "filters": {"parent_substations": [], "lines": [], "operational_units": [], "municipalities": [],
                    "extent_min_lng": None, "extent_min_lat": None, "extent_max_lng": None, "extent_max_lat": None},
        "summary": {"network_id": "ckw", "generated_at": None, "dates": [str(D0), str(D1), str(D2)], "vectors": []},
    }
    for path, body in expected.items():
        response = client.get(f"/api/grid/ckw/{path}", headers=token())
        assert response.status_code == 200 and response.json() == body, path


def test_truncation_is_flagged(fresh_app, tmp_path, token):
    rows = pd.DataFrame({"segment_id": [f"{i:032x}" for i in range(10_001)], "date": D0, "risk_vector": "wind",
                         "risk_level": "WARNING", "risk_color_hex": "#F7D000", "metrics": "{}"})
    publish_risk(tmp_path / "published", "ckw", TODAY, replace={"risks.parquet": rows})
    client = fresh_app()
    full = client.get(f"/api/grid/ckw/risks?dates={D0}", headers=token())
    assert full.headers["x-result-truncated"] == "true" and full.json()["count"] == 10_000
    assert full.json()["items"][-1]["segment_id"] == f"{9999:032x}"
    rest = client.get(f"/api/grid/ckw/risks?dates={D0}&offset=10000", headers=token())
    assert "x-result-truncated" not in rest.headers and rest.json()["count"] == 1
    page = client.get(f"/api/grid/ckw/risks?dates={D0}&limit=2&offset=3", headers=token()).json()
    assert page["limit"] == 2 and page["offset"] == 3 and [r["segment_id"] for r in page["items"]] == [
        f"{3:032x}", f"{4:032x}"]


def test_health_reports_readability_and_freshness(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["state_db"] == {"readable": True}
    datasets = health["publications"]["datasets"]
    assert set(datasets) == {"risk", "topology"} and datasets["risk"]["networks"] == 2
    assert 0 <= datasets["risk"]["age_s"] < 3600


def test_health_degraded_when_state_db_unreadable(fresh_app, tmp_path):
    client = fresh_app()  # migrated and running; now make the state database unreachable
    (tmp_path / "state.db").unlink()
    (tmp_path / "state.db").mkdir()
    body = client.get("/health").json()
    assert body["status"] == "degraded" and body["state_db"] == {"readable": False}
