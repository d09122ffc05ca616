"""Authorisation (alerts-and-access.md §7): the Rego policy in ``policies/*.rego``, in process.

The modules are compiled once into a regopy bundle; each decision sets the input and runs
the bundle's query for ``allow`` and ``reason``. Decisions are cached per (token, network,
action) for a short time. A missing bundle or an evaluation error denies
(``no-policy-engine`` / ``policy-error``); only ``CELINE_ENV=dev`` turns that into a loudly
logged permissive fallback.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# regopy's native library must load after DuckDB's: importing duckdb after regopy aborts
# the interpreter ("double free or corruption"), whatever imports the two modules.
import duckdb  # noqa: F401
import regopy

from grid_platform.api.identity import Principal, TTLCache

log = logging.getLogger(__name__)

PACKAGE = "data.celine.grid.access"
QUERY = f"allow := {PACKAGE}.allow; reason := {PACKAGE}.reason"


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str
    engine_ok: bool = True  # False: a failure answer, never cached so the engine can recover


def claimed_network(principal: Principal, network_id: str | None) -> str | None:
    """The network a user acts for: the requested one if held, else the single DSO, else None."""
    if principal.subject_type == "service":
        return None
    networks = principal.dso_networks
    if network_id is not None and network_id in networks:
        return network_id
    return networks[0] if len(networks) == 1 else None


def policy_input(principal: Principal, action: str, *, resource_type: str,
                 network_id: str | None = None) -> dict[str, Any]:
    claimed = claimed_network(principal, network_id)
    # Groups of the organisation concerned only; realm groups and services grant nothing.
    groups = list(principal.organizations[claimed].groups) if claimed else []
    return {
        "subject": {
            "id": principal.sub,
            "type": principal.subject_type,
            "groups": groups,
            "scopes": sorted(principal.scopes),
            "claims": {"network_id": claimed, "dso_count": len(principal.dso_networks)},
        },
        "resource": {"type": resource_type, "id": "grid",
                     "attributes": {"network_id": network_id} if network_id is not None else {}},
        "action": {"name": action},
    }


class PolicyEngine:
    def __init__(self, policy_dir: Path, *, dev: bool = False, cache_ttl_s: float = 30.0):
        self.policy_dir = Path(policy_dir)
        self.dev = dev
        self.load_error: str | None = None
        self._interpreter: regopy.Interpreter | None = None
        self._bundle: Any = None
        self._lock = threading.Lock()
        self._cache: TTLCache[Decision] = TTLCache(maxsize=10000, ttl_s=cache_ttl_s)
        try:
            modules = sorted(self.policy_dir.glob("*.rego"))
            if not modules:
                raise FileNotFoundError(f"no *.rego policy in {self.policy_dir}")
            interpreter = regopy.Interpreter()
            for path in modules:
                interpreter.add_module(path.name, path.read_text(encoding="utf-8"))
            self._bundle = interpreter.build(QUERY)
            self._interpreter = interpreter
        except (regopy.RegoError, OSError) as exc:
            self.load_error = str(exc)
            log.error("policy bundle from %s not loaded: %s", self.policy_dir, exc)

    @property
    def loaded(self) -> bool:
        return self._interpreter is not None

    def _failure(self, reason: str) -> Decision:
        if self.dev:
            log.error("POLICY ENGINE UNAVAILABLE (%s): CELINE_ENV=dev fallback ALLOWS this request", reason)
            return Decision(True, f"dev permissive fallback ({reason})", engine_ok=False)
        return Decision(False, reason, engine_ok=False)

    def evaluate(self, document: dict[str, Any]) -> Decision:
        if self._interpreter is None:
            return self._failure("no-policy-engine")
        try:
            with self._lock:
                self._interpreter.set_input(document)
                output = self._interpreter.query_bundle(self._bundle)
                text = str(output)
            # Parse the whole answer: Output.binding() on an undefined result aborts the process.
            if not output.ok() or text.strip() == "undefined":
                raise RuntimeError(f"policy query failed: {text}")
            bindings = json.loads(text)["bindings"]
            allow, reason = bindings["allow"], bindings["reason"]
        except Exception:
            log.exception("policy evaluation failed")
            return self._failure("policy-error")
        return Decision(allow is True, str(reason))

    def decide(self, cache_key: str, principal: Principal, action: str, *, resource_type: str,
               network_id: str | None = None) -> Decision:
        key = (cache_key, network_id, action)
        decision = self._cache.get(key)
        if decision is None:
            decision = self.evaluate(policy_input(principal, action, resource_type=resource_type,
                                                  network_id=network_id))
            if decision.engine_ok:
                self._cache.put(key, decision)
        return decision
