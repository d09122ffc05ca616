"""Access decisions of the flexibility API (flexibility.md §8): ``policies/flexibility.rego``.

The policy bundle is the read API's (``grid_platform.api.policy.PolicyEngine``: every module
in the policy directory, evaluated in process with regopy), queried for package
``celine.flexibility.access``. Fail closed: a missing bundle or an evaluation error denies,
whatever ``CELINE_ENV`` says (the seed's early version failed open).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grid_platform.api.identity import Principal, TTLCache
from grid_platform.api.policy import Decision, PolicyEngine

PACKAGE = "data.celine.flexibility.access"
QUERY = f"allow := {PACKAGE}.allow; reason := {PACKAGE}.reason"
ACTIONS = ("read", "write", "delete", "service", "export")


def policy_input(principal: Principal, action: str, owner_id: str | None) -> dict[str, Any]:
    return {
        "subject": {"id": principal.sub, "is_service": principal.subject_type == "service",
                    "scopes": sorted(principal.scopes)},
        "resource": {"attributes": {"owner_id": owner_id}},
        "action": {"name": action},
    }


class FlexibilityPolicy(PolicyEngine):
    """``decide(token_key, principal, action, owner_id)`` -> Decision (cached briefly per token)."""

    def __init__(self, policy_dir: Path, *, cache_ttl_s: float = 30.0):
        super().__init__(policy_dir, dev=False, cache_ttl_s=cache_ttl_s)
        self._decisions: TTLCache[Decision] = TTLCache(maxsize=10000, ttl_s=cache_ttl_s)
        if self._interpreter is not None:
            try:
                self._bundle = self._interpreter.build(QUERY)
            except Exception as exc:  # noqa: BLE001 - regopy.RegoError: the flexibility package does not compile
                self._interpreter, self.load_error = None, str(exc)

    def decide_flexibility(self, token_key: str, principal: Principal, action: str,
                           owner_id: str | None) -> Decision:
        if action not in ACTIONS:
            raise ValueError(f"unknown flexibility action {action!r}")
        key = (token_key, action, owner_id)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self.evaluate(policy_input(principal, action, owner_id))
            if decision.engine_ok:
                self._decisions.put(key, decision)
        return decision
