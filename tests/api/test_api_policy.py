"""The Rego policy (alerts-and-access.md §7) evaluated in process with regopy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from grid_api_fixtures import dso, make_config, make_settings

from grid_platform.api.app import create_app
from grid_platform.api.identity import Principal
from grid_platform.api.policy import PolicyEngine, policy_input
from grid_platform.settings import PROJECT_ROOT

ENGINE = PolicyEngine(PROJECT_ROOT / "policies")
MISMATCH = "network_id mismatch: user does not belong to the requested DSO"
MISSING = "missing DSO organization membership"
AMBIGUOUS = "ambiguous DSO organization membership: name the network"


def user(*networks: str, **claims) -> Principal:
    return Principal.from_claims({"sub": "u", "organization": dso(*networks), **claims})


def service(scope: str = "") -> Principal:
    return Principal.from_claims({"sub": "svc", "preferred_username": "service-account-x", "scope": scope})


@pytest.mark.parametrize("principal, action, network, allow, reason", [
    (user("ckw"), "read", "ckw", True, "user accessing own network data"),
    (user("ckw"), "read", "ewl", False, MISMATCH),
    (user("ckw", "ewl"), "read", "ewl", True, "user accessing own network data"),
    (user("ckw", "ewl"), "read", "other", False, MISMATCH),
    (user(), "read", "ckw", False, MISSING),
    (user("ckw", scope="grid.admin grid.read"), "read", "ewl", False, MISMATCH),  # scopes never widen
    (user(), "alerts.read", None, True, "user managing own alert rules"),
    (user("ckw"), "alerts.write", None, True, "user managing own alert rules"),
    (user(), "alerts.write", None, False, MISSING),
    (user("ckw", "ewl"), "alerts.write", None, False, AMBIGUOUS),
    (service("grid.read"), "read", "any-network", True, "service access granted"),
    (service("grid.admin"), "read", "ckw", True, "service access granted"),
    (service("grid.alerts.read"), "read", "ckw", False, "service missing grid.read scope"),
    (service("grid.read"), "alerts.read", None, False, "service missing grid.admin scope"),
    (service("grid.admin"), "alerts.write", None, True, "service access granted"),
    (service("grid.admin"), "anything", None, True, "service access granted"),
    (user("ckw"), "delete", "ckw", False, "access denied: no rule for this action"),  # default deny
])
def test_decisions(principal, action, network, allow, reason):
    decision = ENGINE.evaluate(policy_input(principal, action, resource_type="network", network_id=network))
    assert (decision.allow, decision.reason) == (allow, reason)


def test_input_carries_only_the_concerned_organisation_groups():
    principal = Principal.from_claims({"sub": "u", "organization": {
        "ckw": {"type": "dso", "groups": ["/ckw/ops"]}, "ewl": {"type": "dso", "groups": ["/ewl/admin"]},
        "club": {"type": "community", "groups": ["/platform-admin"]}}, "groups": ["/platform-admin"]})
    document = policy_input(principal, "read", resource_type="network", network_id="ewl")
    assert document["subject"]["groups"] == ["/ewl/admin"]
    assert document["subject"]["claims"] == {"network_id": "ewl", "dso_count": 2}
    assert policy_input(principal, "alerts.write", resource_type="alerts")["subject"]["claims"]["network_id"] is None
    svc = policy_input(service("grid.read"), "read", resource_type="network", network_id="ckw")
    assert svc["subject"]["groups"] == [] and svc["subject"]["claims"]["network_id"] is None


def test_missing_bundle_denies_and_dev_falls_back_loudly(tmp_path, caplog):
    engine = PolicyEngine(tmp_path)
    assert not engine.loaded
    decision = engine.decide("k", user("ckw"), "read", resource_type="network", network_id="ckw")
    assert (decision.allow, decision.reason) == (False, "no-policy-engine")
    dev = PolicyEngine(tmp_path, dev=True)
    with caplog.at_level(logging.ERROR, logger="grid_platform.api.policy"):
        assert dev.decide("k", user(), "read", resource_type="network", network_id="ckw").allow
    assert any("ALLOWS" in r.getMessage() for r in caplog.records)


def test_broken_policy_and_evaluation_errors_deny(tmp_path):
    (tmp_path / "broken.rego").write_text("package celine.grid.access\nallow if {\n")
    assert PolicyEngine(tmp_path).evaluate({"subject": {}}).reason == "no-policy-engine"
    (tmp_path / "broken.rego").write_text(
        "package celine.grid.access\nimport rego.v1\nallow := x if { x := 1 / 0 }\nallow := true if { true }\n")
    decision = PolicyEngine(tmp_path).evaluate({"subject": {"type": "user"}})
    assert not decision.allow and not decision.engine_ok


def test_decisions_are_cached_per_token_network_action():
    engine = PolicyEngine(PROJECT_ROOT / "policies", cache_ttl_s=60)
    calls = []
    original = engine.evaluate
    engine.evaluate = lambda document: calls.append(document) or original(document)  # type: ignore[method-assign]
    for _ in range(3):
        engine.decide("token-a", user("ckw"), "read", resource_type="network", network_id="ckw")
    engine.decide("token-a", user("ckw"), "read", resource_type="network", network_id="ewl")
    engine.decide("token-b", user("ckw"), "read", resource_type="network", network_id="ckw")
    assert len(calls) == 3


def test_app_refuses_to_start_without_policy_outside_dev(tmp_path):
    settings = make_settings(tmp_path)
    with pytest.raises(RuntimeError, match="refusing to start without a policy bundle"):
        create_app(settings, config=make_config(policy_dir=tmp_path / "nowhere"))
    assert create_app(settings, config=make_config(policy_dir=tmp_path / "nowhere", celine_env="dev"))


def test_shipped_policy_package(tmp_path: Path):
    text = (PROJECT_ROOT / "policies" / "grid_access.rego").read_text()
    assert "package celine.grid.access" in text and "default allow := false" in text
