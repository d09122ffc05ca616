"""Fetcher spec loading and the static checks over every shipped spec (alerts-and-access §8)."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest
from grid_api_fixtures import local_today, make_settings

from grid_platform.api.fetchers import (
    PayloadError,
    SpecError,
    check_fetcher,
    execute,
    expand_env,
    load_documents,
    load_registry,
    prepare_payload,
)
from grid_platform.api.publications import PublicationStore
from grid_platform.api.routes import GridReader
from grid_platform.api.sqltemplate import bind_names

REGISTRY = load_registry()
MINIMAL = """
domain: {domain}
base_path: /api/{domain}/{{network_id}}
models:
  {model}: {{value: integer}}
fetchers:
  - id: {id}
    path: {path}
    client: {client}
    dataset: risk
    limit: {limit}
    parameters:
      level: {{type: string, enum: [a, b], default: a}}
    query: "SELECT 1 AS value"
    response: {{shape: list, model: {model}}}
"""


def write_spec(directory: Path, name: str, **values: str) -> Path:
    fields = {"domain": "t", "model": "One", "id": "one", "path": "one", "client": "publications", "limit": "5"}
    fields.update(values)
    path = directory / name
    path.write_text(MINIMAL.format(**fields))
    return path


def test_shipped_specs_cover_the_catalogue():
    paths = {spec.path.removeprefix("/api/grid/{network_id}/") for spec in REGISTRY}
    assert paths == {
        "wind/map", "wind/bosco", "wind/alert-distribution", "wind/trend", "heat/map", "heat/alert-distribution",
        "heat/trend", "substations/map", "filters", "summary", "tile-index", "shapes", "tree-strike-spans", "risks",
        "risks-now", "risks-8h", "trendline", "risk-km",
    }
    limits = {spec.id: spec.limit for spec in REGISTRY}
    assert limits == {
        "wind_map": 10000, "wind_bosco": 10000, "wind_alert_distribution": 100, "wind_trend": 10,
        "heat_map": 10000, "heat_alert_distribution": 100, "heat_trend": 10, "substations_map": 10000,
        "filters": 1, "summary": 1, "tile_index": 500, "shapes": 10000, "tree_strike_spans": 5000,
        "risks": 10000, "risks_now": 10000, "risks_8h": 30000, "trendline": 500, "risk_km": 20000,
    }
    assert {s.id for s in REGISTRY if s.cache == "topology"} == {"tile_index", "shapes", "tree_strike_spans"}


@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda s: s.qualified_id)
def test_static_checks(spec):
    """Every :param declared, no raw payload output, minimal and full payloads render."""
    assert check_fetcher(spec, REGISTRY.env) == []


@pytest.fixture(scope="module")
def reader(published_dir):
    store = PublicationStore(make_settings(published_dir).published_dir)
    yield GridReader(REGISTRY, store, "Europe/Zurich")
    store.close()


@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda s: s.qualified_id)
@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_every_fetcher_runs_on_a_publication(reader, spec, full):
    payload = spec.sample_payload(full=full)
    if "dates" in payload:
        payload["dates"] = [local_today().isoformat()]
    if "date_from" in payload:
        payload["date_from"] = payload["date_to"] = local_today().isoformat()
    result = reader.fetch(spec.qualified_id, "ckw", payload)
    assert result.body is not None


def test_static_check_catches_bad_templates(tmp_path):
    spec_file = write_spec(tmp_path, "a.yaml")
    text = spec_file.read_text().replace('"SELECT 1 AS value"',
                                         '"SELECT {{ level }} AS value WHERE x = :undeclared"')
    spec_file.write_text(text)
    registry = load_registry(tmp_path / "*.yaml")
    problems = check_fetcher(registry.get("t.one"), registry.env)
    assert any(":undeclared is not a declared parameter" in p for p in problems)
    assert any("unquoted output of ['level']" in p for p in problems)
    assert any("payload: bind parameter :undeclared is not in the payload" in p for p in problems)


def test_env_expansion():
    env = {"A": "1", "EMPTY": ""}
    assert expand_env({"x": ["${A}", "${B:-two}", "${EMPTY:-d}", "p${A}q"], "n": 5}, env) == {
        "x": ["1", "two", "", "p1q"], "n": 5}
    with pytest.raises(SpecError, match="MISSING is not set"):
        expand_env("${MISSING}", env, "f.yaml")


def test_loading_in_sorted_order_with_env_and_duplicates(tmp_path, monkeypatch):
    write_spec(tmp_path, "b.yaml", id="second", path="b", limit="${GRID_TEST_LIMIT:-7}")
    write_spec(tmp_path, "a.yaml", id="first", path="a", model="Other")
    assert [p.name for p, _ in load_documents(tmp_path / "*.yaml")] == ["a.yaml", "b.yaml"]
    assert load_registry(tmp_path / "*.yaml").get("t.second").limit == 7
    monkeypatch.setenv("GRID_TEST_LIMIT", "3")
    assert load_registry(tmp_path / "*.yaml").get("t.second").limit == 3
    write_spec(tmp_path, "c.yaml", id="first", path="c", model="Third")
    with pytest.raises(SpecError, match="duplicate fetcher id"):
        load_registry(tmp_path / "*.yaml")


@pytest.mark.parametrize("values, message", [
    ({"client": "warehouse"}, "unknown client 'warehouse'"),
    ({"limit": "${GRID_UNSET_VAR_FOR_TEST}"}, "GRID_UNSET_VAR_FOR_TEST is not set"),
    ({"id": "Bad-Id"}, "does not match"),
    ({"limit": "0"}, "limit out of range"),
])
def test_invalid_specs_fail_at_startup(tmp_path, values, message):
    write_spec(tmp_path, "a.yaml", **values)
    with pytest.raises(SpecError, match=message):
        load_registry(tmp_path / "*.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    (tmp_path / "a.yaml").write_text("domain: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_documents(tmp_path / "*.yaml")
    with pytest.raises(SpecError, match="no fetcher spec files"):
        load_documents(tmp_path / "none" / "*.yaml")


def test_payload_preparation_does_not_mutate_and_fills_defaults():
    spec = REGISTRY.get("grid.risk_km")
    given = {"dates": ["2026-07-14"], "network_id": "ckw"}
    prepared = prepare_payload(spec, given, today=date(2026, 7, 14))
    assert prepared == {"dates": ["2026-07-14"], "level": "tratta", "network_id": "ckw"}
    assert given == {"dates": ["2026-07-14"], "network_id": "ckw"}
    prepared["dates"].append("x")
    assert given["dates"] == ["2026-07-14"]
    distribution = prepare_payload(REGISTRY.get("grid.wind_alert_distribution"), {"network_id": "x"},
                                   today=date(2026, 7, 14))
    assert distribution["dates"] == ["2026-07-14", "2026-07-15", "2026-07-16"]
    trend = prepare_payload(REGISTRY.get("grid.heat_trend"), {"network_id": "x"}, today=date(2026, 7, 1))
    assert (trend["window_from"], trend["window_to"]) == ("2026-06-28", "2026-07-03")


@pytest.mark.parametrize("payload, loc", [
    ({}, ["payload"]),  # dates missing
    ({"dates": []}, ["payload", "dates"]),
    ({"dates": ["2026-02-30"]}, ["payload", "dates", 0]),
    ({"dates": ["14.07.2026"]}, ["payload", "dates", 0]),
    ({"dates": ["2026-07-14"] * 8}, ["payload", "dates"]),
    ({"dates": ["2026-07-14"], "level": "feeder"}, ["payload", "level"]),
    ({"dates": ["2026-07-14"], "unknown": 1}, ["payload"]),
])
def test_payload_validation_errors(payload, loc):
    with pytest.raises(PayloadError) as err:
        prepare_payload(REGISTRY.get("grid.risk_km"), {**payload, "network_id": "x"}, today=date(2026, 7, 14))
    assert err.value.errors[0]["loc"] == loc


def test_trendline_order_check():
    with pytest.raises(PayloadError, match="date_to must not be before date_from"):
        prepare_payload(REGISTRY.get("grid.trendline"),
                        {"date_from": "2026-07-15", "date_to": "2026-07-14", "network_id": "x"}, today=date.today())


def test_output_mapper_and_schema_defaults_are_values(tmp_path, published_dir):
    (tmp_path / "m.yaml").write_text(textwrap.dedent("""
        domain: t
        base_path: /api/t/{network_id}
        models:
          Echo: {value: string, upper: string}
        fetchers:
          - id: echo
            path: echo
            client: publications
            dataset: risk
            output_mapper: tests_api_mappers.add_upper
            parameters:
              since: {type: string, default: "NOW() - INTERVAL '12 hours'"}
            query: "SELECT :since AS value FROM read_parquet({{ sql_quote(entity.tables.risks) }}) WHERE FALSE UNION ALL SELECT :since"
            response: {shape: list, model: Echo}
        """))
    (tmp_path / "tests_api_mappers.py").write_text("def add_upper(row):\n    return {**row, 'upper': row['value'].upper()}\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        registry = load_registry(tmp_path / "*.yaml")
    finally:
        sys.path.remove(str(tmp_path))
    spec = registry.get("t.echo")
    assert bind_names(spec.source) == {"since"}
    store = PublicationStore(make_settings(published_dir).published_dir)
    try:
        payload = prepare_payload(spec, {"network_id": "ckw"}, today=date.today())
        result = execute(spec, registry.models["Echo"], store, store.entity("t", "risk", "ckw"), payload)
    finally:
        store.close()
    # The default binds as a string literal, never as SQL.
    assert result.body == [{"value": "NOW() - INTERVAL '12 hours'", "upper": "NOW() - INTERVAL '12 HOURS'"}]
