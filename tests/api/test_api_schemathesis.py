"""Property-based contract run: the schemathesis engine over the generated OpenAPI document.

With a valid token for the published network, no request may answer 500 and no response
may fall outside its documented status codes, content type, headers and schema. The
engine runs its examples, coverage (boundary values) and fuzzing phases per operation.
The app is built inside the test, so deselecting ``slow`` costs nothing at collection.
"""

from __future__ import annotations

import warnings

import pytest
import schemathesis
from grid_api_fixtures import dso, make_config, make_settings, sign
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, from_schema
from schemathesis.engine import events as engine_events

from grid_platform.api.app import create_app

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
EXAMPLES = 8  # fuzzing examples per operation: bounded so the run stays well under two minutes


@pytest.mark.slow
def test_api_conforms_to_its_openapi_document(published_dir):
    # Webhook hosts are not resolved here: generated hostnames must not trigger DNS lookups.
    app = create_app(make_settings(published_dir), config=make_config(allow_local_webhooks=True))
    token = sign({"sub": "fuzzer", "organization": dso("ckw")}, expires_in=86400)
    config = SchemathesisConfig.from_dict({
        "headers": {"Authorization": f"Bearer {token}"},
        "parameters": {"path.network_id": "ckw"},
        "generation": {"max-examples": EXAMPLES, "allow-x00": False},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": {"stateful": {"enabled": False}},
        "seed": 20260714,
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = schemathesis.openapi.from_asgi("/api/openapi.json", app, config=config)
    failures: dict[str, list[str]] = {}
    scenarios, operations = 0, set()
    for event in from_schema(schema).execute():
        if isinstance(event, engine_events.ScenarioFinished):
            scenarios += 1
            operations.add(event.label)
            if event.status in (Status.FAILURE, Status.ERROR):
                failures[f"{event.phase} {event.label}"] = [
                    f"{check.name}: {check.failure_info.failure.title if check.failure_info else check.status}"
                    for checks in event.recorder.checks.values() for check in checks
                    if check.status != Status.SUCCESS]
        elif isinstance(event, (engine_events.NonFatalError, engine_events.FatalError)):
            failures[f"engine error {getattr(event, 'label', '')}"] = [str(getattr(event, "info", event))[:2000]]
    assert len(operations) >= 26 and scenarios >= 2 * len(operations)
    assert failures == {}
