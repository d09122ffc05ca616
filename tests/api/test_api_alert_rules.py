"""Alert rules and notification settings through the API (alerts-and-access.md §1–3)."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from grid_api_fixtures import make_config, make_settings

from grid_platform.api.accounts import webhook_problem
from grid_platform.api.app import create_app
from grid_platform.store.recipients import invalid_recipients, parse_recipients, synthetic_user_id

RULES = "/api/alert-rules"
SETTINGS = "/api/notification-settings"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """One app for the module; every test acts as its own users."""
    with TestClient(create_app(make_settings(tmp_path_factory.mktemp("rules")), config=make_config())) as client:
        yield client


def test_rule_lifecycle(api, token):
    alice = token(sub="alice-lifecycle")
    created = api.post(RULES, headers=alice, json={
        "risk_types": ["wind", "heat", "wind"], "threshold": "WARNING",
        "recipients": "ops@example.ch; Netz@example.ch", "user_id": "mallory", "network_id": "other"})
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["risk_types"] == ["wind", "heat"] and rule["user_id"] == "alice-lifecycle"
    assert rule["network_id"] == "ckw"
    assert rule["active"] is True and rule["recipients"] == "ops@example.ch; Netz@example.ch"
    assert datetime.fromisoformat(rule["created_at"]).utcoffset().total_seconds() == 0
    assert rule["created_at"].endswith("+00:00")
    uuid.UUID(rule["id"])

    toggled = api.patch(f"{RULES}/{rule['id']}", headers=alice, json={"active": False})
    assert toggled.status_code == 200
    assert toggled.json()["active"] is False and toggled.json()["threshold"] == "WARNING"
    assert toggled.json()["updated_at"] >= rule["updated_at"]
    changed = api.patch(f"{RULES}/{rule['id']}", headers=alice, json={"threshold": "ALERT", "recipients": None}).json()
    assert changed["threshold"] == "ALERT" and changed["recipients"] is None and changed["risk_types"] == ["wind", "heat"]

    assert [r["id"] for r in api.get(RULES, headers=alice).json()] == [rule["id"]]
    assert api.delete(f"{RULES}/{rule['id']}", headers=alice).status_code == 204
    assert api.delete(f"{RULES}/{rule['id']}", headers=alice).status_code == 404
    assert api.get(RULES, headers=alice).json() == []


def test_rules_are_ordered_oldest_first(api, token):
    bob = token(sub="bob")
    ids = [api.post(RULES, headers=bob, json={"risk_types": ["wind"], "threshold": "ALERT"}).json()["id"]
           for _ in range(4)]
    assert [r["id"] for r in api.get(RULES, headers=bob).json()] == ids


def test_confidentiality_from_both_sides(api, token):
    alice, bob = token(sub="alice-conf"), token(sub="bob-conf")
    rule = api.post(RULES, headers=alice, json={"risk_types": ["heat"], "threshold": "ALERT"}).json()
    bobs = api.post(RULES, headers=bob, json={"risk_types": ["wind"], "threshold": "ALERT"}).json()
    assert [r["id"] for r in api.get(RULES, headers=bob).json()] == [bobs["id"]]
    assert [r["id"] for r in api.get(RULES, headers=alice).json()] == [rule["id"]]
    for response in (api.patch(f"{RULES}/{rule['id']}", headers=bob, json={"active": False}),
                     api.delete(f"{RULES}/{rule['id']}", headers=bob),
                     api.patch(f"{RULES}/{uuid.uuid4()}", headers=bob, json={"active": False})):
        assert response.status_code == 404 and response.json() == {"detail": "alert rule not found"}
    assert api.get(RULES, headers=alice).json()[0]["active"] is True  # untouched


@pytest.mark.parametrize("body, field", [
    ({"risk_types": [], "threshold": "ALERT"}, "risk_types"),
    ({"risk_types": ["fire"], "threshold": "ALERT"}, "risk_types"),
    ({"risk_types": ["wind"], "threshold": "NORMAL"}, "threshold"),
    ({"risk_types": ["wind"]}, "threshold"),
    ({"threshold": "ALERT"}, "risk_types"),
    ({"risk_types": ["wind"], "threshold": "ALERT", "recipients": "ok@example.ch, not-an-address; x@y"}, "recipients"),
])
def test_create_validation(api, token, body, field):
    response = api.post(RULES, headers=token(), json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"][:2] == ["body", field]
    if field == "recipients":
        assert "not-an-address" in detail[0]["msg"] and "x@y" in detail[0]["msg"]


def test_patch_validation(api, token):
    erin = token(sub="erin")
    rule = api.post(RULES, headers=erin, json={"risk_types": ["wind"], "threshold": "ALERT"}).json()
    for body in ({"threshold": None}, {"risk_types": []}, {"risk_types": None}, {"active": None},
                 {"recipients": "bad token"}):
        assert api.patch(f"{RULES}/{rule['id']}", headers=erin, json=body).status_code == 422, body
    assert api.patch(f"{RULES}/not-a-uuid", headers=token(), json={"active": True}).status_code == 422
    assert api.delete(f"{RULES}/not-a-uuid", headers=token()).status_code == 422


def test_memberships_and_services(api, token, service_token):
    body = {"risk_types": ["wind"], "threshold": "ALERT"}
    two = api.post(RULES, headers=token(networks=("ckw", "ewl")), json=body)
    assert two.status_code == 403 and two.json()["detail"] == "ambiguous DSO organization membership: name the network"
    none = api.post(RULES, headers=token(networks=()), json=body)
    assert none.status_code == 403 and none.json()["detail"] == "missing DSO organization membership"
    assert api.get(RULES, headers=token(networks=())).json() == []
    admin = api.post(RULES, headers=service_token("grid.admin"), json=body)
    assert admin.status_code == 403 and admin.json()["detail"] == "missing DSO organization membership"
    reader = api.get(RULES, headers=service_token("grid.read"))
    assert reader.status_code == 403 and reader.json()["detail"] == "service missing grid.admin scope"
    assert api.get(RULES, headers=service_token("grid.admin")).json() == []


def test_me_deactivates_rules_of_networks_no_longer_held(api, token):
    rule = api.post(RULES, headers=token(sub="carol"), json={"risk_types": ["wind"], "threshold": "ALERT"}).json()
    assert api.get("/api/me", headers=token(sub="carol", networks=("ewl",))).status_code == 200
    (after,) = api.get(RULES, headers=token(sub="carol", networks=("ewl",))).json()
    assert after["id"] == rule["id"] and after["active"] is False


def test_settings_created_on_first_get_and_merged(api, token):
    alice = token(sub="alice-settings")
    first = api.get(SETTINGS, headers=alice).json()
    assert first["user_id"] == "alice-settings" and first["email_recipients"] is None and first["webhook_url"] is None
    assert api.get(SETTINGS, headers=alice).json() == first
    put = api.put(SETTINGS, headers=alice, json={"email_recipients": "a@example.ch b@example.ch"}).json()
    assert put["email_recipients"] == "a@example.ch b@example.ch" and put["webhook_url"] is None
    hook = api.put(SETTINGS, headers=alice, json={"webhook_url": "https://93.184.216.34/hook"}).json()
    assert hook["email_recipients"] == "a@example.ch b@example.ch"  # absent fields untouched
    assert hook["webhook_url"] == "https://93.184.216.34/hook"
    cleared = api.put(SETTINGS, headers=alice, json={"webhook_url": None}).json()
    assert cleared["webhook_url"] is None and cleared["email_recipients"] == "a@example.ch b@example.ch"
    created_by_put = api.put(SETTINGS, headers=token(sub="dave"), json={"email_recipients": "d@example.ch"})
    assert created_by_put.status_code == 200 and created_by_put.json()["user_id"] == "dave"
    bad = api.put(SETTINGS, headers=alice, json={"email_recipients": "a@example.ch, oops"})
    assert bad.status_code == 422 and "oops" in bad.json()["detail"][0]["msg"]


@pytest.mark.parametrize("url", [
    "http://93.184.216.34/hook", "https://", "/relative/hook", "ftp://93.184.216.34/x",
    "https://127.0.0.1/hook", "https://localhost:8443/hook", "https://10.1.2.3/x", "https://192.168.0.10/x",
    "https://169.254.169.254/latest/meta-data", "https://[::1]/x", "https://[fe80::1]/x", "https://0.0.0.0/x",
    "https://[::ffff:127.0.0.1]/x", "https://no-such-host.invalid/hook", "https://93.184.216.34/" + "a" * 2048,
    "https://93.184.216.34/a b",
])
def test_webhook_url_rejected(api, token, url):
    response = api.put(SETTINGS, headers=token(), json={"webhook_url": url})
    assert response.status_code == 422, url
    assert response.json()["detail"][0]["loc"] == ["body", "webhook_url"]


def test_local_webhooks_allowed_by_flag(fresh_app, token):
    api = fresh_app(config=make_config(allow_local_webhooks=True))
    response = api.put(SETTINGS, headers=token(), json={"webhook_url": "https://127.0.0.1:9000/hook"})
    assert response.status_code == 200 and response.json()["webhook_url"] == "https://127.0.0.1:9000/hook"
    assert api.put(SETTINGS, headers=token(), json={"webhook_url": "http://127.0.0.1/x"}).status_code == 422
    assert webhook_problem("https://10.0.0.1/x", allow_local=True) is None


def test_recipient_parsing():
    text = " Ops@Example.ch; netz@example.ch,ops@example.ch\n\tnetz@EXAMPLE.ch  x@y.z "
    assert parse_recipients(text) == ["Ops@Example.ch", "netz@example.ch", "x@y.z"]
    assert invalid_recipients("a@b.ch, foo, @x.ch; a@b") == ["foo", "@x.ch", "a@b"]
    assert parse_recipients(None) == [] and invalid_recipients("") == []
    assert synthetic_user_id(["B@x.ch", "a@x.ch"]) == synthetic_user_id(["a@x.ch", "b@X.ch"])
    assert synthetic_user_id(["a@x.ch"]).startswith("email-ingest:") and len(synthetic_user_id(["a@x.ch"])) == 29
