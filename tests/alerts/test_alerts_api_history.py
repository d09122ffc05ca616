"""Dispatch history in the read API: ``GET /api/grid/{network_id}/alert-dispatches`` over the
delivery ledger of a real (SQLite) state database, with the API's identity and Rego policy:
an operator sees its own network only, a service needs grid.read."""

import dataclasses
import warnings
from datetime import date, timedelta

import pytest

from grid_platform.alerts.delivery import SENT
from grid_platform.api.app import create_app
from grid_platform.api.config import ApiConfig
from grid_platform.api.identity import mint_token
from grid_platform.settings import load_settings
from grid_platform.store import dispatch as ledger

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from fastapi.testclient import TestClient

CONFIG = ApiConfig(jwt_secret="alerts-history-tests-secret-0123456789")
D0 = date(2026, 7, 1)


def deliver(session, network: str, recipient: str, period: date, *, status: str = SENT, channel: str = "ingest",
            event_type: str = "grid_risk_report") -> str:
    key = ledger.delivery_key(event_type, network, recipient, period.isoformat())
    facts = {"threshold": "WARNING", "risk_types": ["heat", "wind"], "period": period.isoformat(),
             "dates": [period.isoformat()], "email_recipients": ["ops@example.ch"]}
    ledger.claim(session, key, event_type=event_type, channel=channel, recipient_key=recipient,
                 period=period.isoformat(), network_id=network,
                 payload={"user_id": recipient, "community_id": network, "facts": facts})
    if status == SENT:
        ledger.mark_sent(session, key, 200)
    elif status == ledger.DEAD_LETTER:
        ledger.park_dead_letter(session, key, "HTTP 422: facts invalid", status_code=422)
    return key


@pytest.fixture
def client(tmp_path, sqlite_url, sessions):
    with sessions.begin() as session:
        for k in range(3):
            deliver(session, "ckw", f"email-ingest:{k:016x}", D0 - timedelta(days=k))
        deliver(session, "ckw", "u4", D0, status=ledger.DEAD_LETTER)
        deliver(session, "ckw", "webhook:u4", D0, channel="webhook")
        deliver(session, "ckw", "member-1", D0, event_type="flexibility_reminder")  # not an alert
        deliver(session, "ewl", "email-ingest:00000000000000ff", D0)
    settings = dataclasses.replace(load_settings(), data_dir=tmp_path, state_db_url=sqlite_url)
    with TestClient(create_app(settings, config=CONFIG)) as c:
        yield c


def auth(sub: str = "op-1", networks: tuple[str, ...] = ("ckw",), scopes: str = "", **claims) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(sub, organizations=networks, scopes=scopes, config=CONFIG,
                                                    **claims)}


def test_operator_reads_the_history_of_its_network(client):
    response = client.get("/api/grid/ckw/alert-dispatches", headers=auth())
    assert response.status_code == 200
    page = response.json()
    assert (page["count"], page["total"], page["limit"], page["offset"]) == (5, 5, 100, 0)
    assert {item["network_id"] for item in page["items"]} == {"ckw"}
    assert [item["period"] for item in page["items"]] == ["2026-07-01"] * 3 + ["2026-06-30", "2026-06-29"]
    first = page["items"][0]
    assert (first["threshold"], first["risk_types"], first["dates"]) == ("WARNING", ["heat", "wind"], ["2026-07-01"])
    assert "email_recipients" not in first and "ops@example.ch" not in response.text  # addresses stay private
    parked = [i for i in page["items"] if i["status"] == "dead_letter"]
    assert [(i["recipient_key"], i["status_code"], i["last_error"]) for i in parked] == \
        [("u4", 422, "HTTP 422: facts invalid")]


def test_filters_and_pages(client):
    headers = auth()
    dead = client.get("/api/grid/ckw/alert-dispatches?status=dead_letter", headers=headers).json()
    assert [i["recipient_key"] for i in dead["items"]] == ["u4"]
    window = client.get("/api/grid/ckw/alert-dispatches?period_from=2026-06-30&period_to=2026-06-30",
                        headers=headers).json()
    assert [i["period"] for i in window["items"]] == ["2026-06-30"]
    pages = [client.get(f"/api/grid/ckw/alert-dispatches?limit=2&offset={o}", headers=headers).json()
             for o in (0, 2, 4)]
    assert [p["count"] for p in pages] == [2, 2, 1] and {p["total"] for p in pages} == {5}
    assert len({i["key"] for p in pages for i in p["items"]}) == 5
    assert client.get("/api/grid/ckw/alert-dispatches?status=lost", headers=headers).status_code == 422
    assert client.get("/api/grid/ckw/alert-dispatches?limit=0", headers=headers).status_code == 422


def test_other_networks_are_refused(client):
    refused = client.get("/api/grid/ewl/alert-dispatches", headers=auth())
    assert refused.status_code == 403 and "network_id mismatch" in refused.json()["detail"]
    assert client.get("/api/grid/ckw/alert-dispatches", headers=auth(networks=())).status_code == 403
    assert client.get("/api/grid/ckw/alert-dispatches").status_code == 401
    # The operator of ewl sees ewl's row only.
    [row] = client.get("/api/grid/ewl/alert-dispatches", headers=auth("op-2", ("ewl",))).json()["items"]
    assert row["network_id"] == "ewl"


def test_services_need_grid_read(client):
    service = {"preferred_username": "service-account-bi"}
    assert client.get("/api/grid/ewl/alert-dispatches",
                      headers=auth("svc", (), "grid.read", **service)).json()["total"] == 1
    refused = client.get("/api/grid/ewl/alert-dispatches", headers=auth("svc", (), "nudging.ingest", **service))
    assert refused.status_code == 403 and refused.json()["detail"] == "service missing grid.read scope"
