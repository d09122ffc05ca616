"""The value-fetcher template contract (alerts-and-access.md §8) with hostile input."""

from __future__ import annotations

import math

import duckdb
import pytest

from grid_platform.api.sqltemplate import (
    TemplateError,
    bind,
    bind_names,
    make_environment,
    raw_outputs,
    render,
    sql_list,
    sql_quote,
)

HOSTILE = ["x') OR 1=1 --", "O'Brien", "'; DROP TABLE t; --", "\\'", "''", "a\nb", "€ ünïcödé", "$1", ":x"]


@pytest.mark.parametrize("value, expected", [
    (None, "NULL"), (True, "TRUE"), (False, "FALSE"), (0, "0"), (-17, "-17"), (2.5, "2.5"),
    ("abc", "'abc'"), ("O'Brien", "'O''Brien'"), ("x') OR 1=1 --", "'x'') OR 1=1 --'"), ("", "''"),
])
def test_sql_quote(value, expected):
    assert sql_quote(value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "a\x00b"])
def test_sql_quote_rejects_unrepresentable_values(value):
    with pytest.raises(TemplateError):
        sql_quote(value)


def test_sql_list():
    assert sql_list(["a", "b'c", 1, None, True]) == "('a', 'b''c', 1, NULL, TRUE)"
    assert sql_list(("x",)) == "('x')"
    for bad in ([], (), "abc", {"a": 1}, None, 5):
        with pytest.raises(TemplateError):
            sql_list(bad)
    with pytest.raises(TemplateError):
        sql_list([1.0, math.nan])


@pytest.mark.parametrize("hostile", HOSTILE)
def test_quoted_values_stay_data_in_duckdb(hostile):
    con = duckdb.connect()
    con.execute("CREATE TABLE t (v VARCHAR)")
    con.execute("INSERT INTO t VALUES ('safe')")
    assert con.execute(f"SELECT count(*) FROM t WHERE v IN {sql_list([hostile])}").fetchone() == (0,)
    assert con.execute(f"SELECT {sql_quote(hostile)}").fetchone() == (hostile,)
    sql, params = bind("SELECT count(*) FROM t WHERE v = :v", {"v": hostile})
    assert con.execute(sql, params).fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)  # nothing dropped


def test_render_undefined_is_falsy_in_if_and_an_error_when_rendered():
    env = make_environment()
    template = env.from_string("SELECT 1{% if dates %} AND d IN {{ sql_list(dates) }}{% endif %}"
                               "{% if level == 'line' %} L{% endif %}")
    assert render(template, {}, {}) == "SELECT 1"
    assert render(template, {}, {"dates": ["2026-07-01"], "level": "line"}) == "SELECT 1 AND d IN ('2026-07-01') L"
    with pytest.raises(TemplateError, match="undefined"):
        render(env.from_string("SELECT {{ sql_quote(missing) }}"), {}, {})
    with pytest.raises(TemplateError, match="undefined"):
        render(env.from_string("SELECT {{ missing }}"), {}, {})


def test_render_autoescape_is_off_and_entity_is_trusted():
    env = make_environment()
    out = render(env.from_string("FROM read_parquet({{ sql_quote(entity.path) }}) -- <&>"),
                 {"path": "/data/it's.parquet"}, {})
    assert out == "FROM read_parquet('/data/it''s.parquet') -- <&>"


def test_bind_uses_native_parameters_outside_literals():
    sql, params = bind("SELECT :a::DATE, ':not_a', \"col:x\", x::int -- :comment\n/* :block */ WHERE b = :b",
                       {"a": "2026-07-01", "b": 3, "comment": 1, "block": 2})
    assert sql == "SELECT $a::DATE, ':not_a', \"col:x\", x::int -- :comment\n/* :block */ WHERE b = $b"
    assert params == {"a": "2026-07-01", "b": 3}
    con = duckdb.connect()
    assert con.execute("SELECT $a::DATE, $b", params).fetchone()[1] == 3


def test_bind_quote_escapes_and_errors():
    sql, params = bind("SELECT 'it''s :x', :y", {"y": None})
    assert sql == "SELECT 'it''s :x', $y" and params == {"y": None}
    with pytest.raises(TemplateError, match="unterminated quoted literal"):
        bind("SELECT 'open :x", {"x": 1})
    with pytest.raises(TemplateError, match="unterminated quoted literal"):
        bind('SELECT "open', {})
    with pytest.raises(TemplateError, match="unterminated comment"):
        bind("SELECT 1 /* :x", {"x": 1})
    with pytest.raises(TemplateError, match=":missing is not in the payload"):
        bind("SELECT :missing", {})
    with pytest.raises(TemplateError, match="scalar"):
        bind("SELECT :xs", {"xs": ["a"]})
    with pytest.raises(TemplateError, match="non-finite"):
        bind("SELECT :f", {"f": math.nan})


def test_static_helpers():
    env = make_environment()
    source = ("{% macro f() %}{% if a %} AND a IN {{ sql_list(a) }}{% endif %}{% endmacro %}"
              "SELECT * FROM {{ entity.tables.t }} WHERE x = :x AND y::date = :y {{ f() }} AND z = '{{ sql_quote(z) }}'")
    assert raw_outputs(env, source) == []
    assert bind_names(source) == {"x", "y"}
    assert raw_outputs(env, "SELECT {{ payload_value }}") and raw_outputs(env, "SELECT {{ a|join(',') }}")
    assert raw_outputs(env, "{% macro m(v) %}{{ v }}{% endmacro %}SELECT {{ m(a) }}")
    assert bind_names("SELECT '{{ x }}:q' || :p {# :c #}") == {"p"}
