"""Value-fetcher SQL templates (alerts-and-access.md §8).

Two phases turn a fetcher's template into a statement:

1. Jinja2 (autoescape off) with ``entity`` (trusted: ids and publication paths chosen by the
   platform) and the payload keys. Payload values may only reach the SQL text through
   ``sql_quote``/``sql_list``; undefined names are falsy in ``{% if %}`` and an error when
   rendered, so an optional filter that was not given simply drops out.
2. ``:name`` bind parameters outside quoted literals and comments become native DuckDB
   binds (``$name``), never text: ``::date`` casts survive, an unterminated quote or a
   parameter missing from the payload is an error.

Upstream once quoted strings without escaping (``?asset_type=x') OR 1=1 --`` injected SQL)
and rendered an empty list as ``()``; both are errors here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import Environment, StrictUndefined, Template, nodes

QUOTING_FUNCTIONS = ("sql_quote", "sql_list")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JINJA_CONSTRUCT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


class TemplateError(ValueError):
    """A template or a value cannot be turned into safe SQL."""


def sql_quote(value: Any) -> str:
    """Render one value as a SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise TemplateError(f"non-finite number {value!r} cannot be rendered as SQL")
        return repr(value)
    text = str(value)
    if "\x00" in text:
        raise TemplateError("a NUL character cannot be rendered as a SQL literal")
    return "'" + text.replace("'", "''") + "'"


def sql_list(values: Any) -> str:
    """Render a non-empty list as ``(v1, v2, …)``; templates guard optional lists with ``{% if %}``."""
    if not isinstance(values, (list, tuple)):
        raise TemplateError(f"sql_list expects a list, got {type(values).__name__}")
    if not values:
        raise TemplateError("sql_list of an empty list (guard optional lists with {% if %})")
    return "(" + ", ".join(sql_quote(v) for v in values) + ")"


class _FalsyUndefined(StrictUndefined):
    """Undefined that is falsy in ``{% if %}`` (also as ``x == 'a'``) but fails when rendered."""

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = StrictUndefined.__hash__


def make_environment() -> Environment:
    env = Environment(autoescape=False, undefined=_FalsyUndefined, keep_trailing_newline=True)
    env.globals.update(sql_quote=sql_quote, sql_list=sql_list)
    return env


def render(template: Template, entity: Any, payload: Mapping[str, Any]) -> str:
    """Phase 1. Jinja errors (undefined names rendered, bad values) become ``TemplateError``."""
    try:
        return template.render({**payload, "entity": entity})
    except TemplateError:
        raise
    except Exception as exc:  # jinja2.UndefinedError, TypeError from a filter, …
        raise TemplateError(f"template rendering failed: {exc}") from exc


def _bind_tokens(sql: str) -> Iterator[tuple[str, int, int]]:
    """Yield ``(name, start, end)`` of each ``:name`` outside quotes and comments."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = i + 1
            while True:
                k = sql.find(c, j)
                if k < 0:
                    raise TemplateError(f"unterminated quoted literal starting at offset {i}")
                if k + 1 < n and sql[k + 1] == c:  # doubled quote inside the literal
                    j = k + 2
                    continue
                break
            i = k + 1
        elif sql.startswith("--", i):
            k = sql.find("\n", i)
            i = n if k < 0 else k + 1
        elif sql.startswith("/*", i):
            k = sql.find("*/", i + 2)
            if k < 0:
                raise TemplateError(f"unterminated comment starting at offset {i}")
            i = k + 2
        elif c == ":" and (i == 0 or sql[i - 1] != ":"):
            m = _NAME.match(sql, i + 1)
            if m:
                yield m.group(), i, m.end()
                i = m.end()
            else:
                i += 1
        else:
            i += 1


def _bind_value(name: str, value: Any) -> Any:
    if isinstance(value, (list, tuple, dict, set)):
        raise TemplateError(f"bind parameter :{name} must be a scalar (render lists with sql_list)")
    sql_quote(value)  # same domain as the textual form: rejects NaN/±inf and NUL
    return value


def bind(sql: str, payload: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Phase 2: ``:name`` → native ``$name`` plus the parameter values DuckDB binds."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    last = 0
    for name, start, end in _bind_tokens(sql):
        if name not in payload:
            raise TemplateError(f"bind parameter :{name} is not in the payload")
        params[name] = _bind_value(name, payload[name])
        parts.append(sql[last:start])
        parts.append("$" + name)
        last = end
    parts.append(sql[last:])
    return "".join(parts), params


def bind_names(source: str) -> set[str]:
    """``:name`` tokens of a template source, Jinja constructs removed (static check)."""
    return {name for name, _, _ in _bind_tokens(_JINJA_CONSTRUCT.sub(" ", source))}


def raw_outputs(env: Environment, source: str) -> list[str]:
    """``{{ … }}`` expressions that could print a payload value without quoting (static check).

    Allowed: calls to ``sql_quote``/``sql_list``, calls to macros of the same source with
    constant arguments (their bodies are checked too), and expressions that read only ``entity``.
    """
    ast = env.parse(source)
    macros = {m.name for m in ast.find_all(nodes.Macro)}
    problems = []
    for output in ast.find_all(nodes.Output):
        for expr in output.nodes:
            if isinstance(expr, nodes.TemplateData):
                continue
            if isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Name):
                if expr.node.name in QUOTING_FUNCTIONS:
                    continue
                if expr.node.name in macros and all(
                    isinstance(a, nodes.Const) for a in [*expr.args, *(k.value for k in expr.kwargs)]
                ):
                    continue
            names = {n.name for n in expr.find_all(nodes.Name)}
            if isinstance(expr, nodes.Name):
                names.add(expr.name)
            if names - {"entity"}:
                problems.append(f"unquoted output of {sorted(names - {'entity'})} at line {expr.lineno}")
    return problems
