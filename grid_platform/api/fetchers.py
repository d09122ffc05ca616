"""Declarative value fetchers: YAML specs -> validated payloads -> SQL -> shaped responses.

A spec file (``grid_platform/api/specs/*.yaml``) holds a ``domain``, the ``base_path`` of its
routes, optional Jinja ``macros`` shared by its queries, response ``models`` and a list of
``fetchers``. Each fetcher is one read endpoint: its parameters (types, patterns, lists,
defaults), a Jinja2 SQL template (contract in ``sqltemplate``), a row limit, the response
shape and a cache policy. Routes and the OpenAPI document are generated from these
(``routes.py``); adding an endpoint means adding an entry.

Loading follows alerts-and-access.md §8: ``yaml.safe_load``, files in sorted glob order,
``${VAR}`` / ``${VAR:-default}`` expanded in every string (an unset variable without a
default is a startup error; an empty one is used as-is), ids registered as
``{domain}.{id}`` with duplicates rejected, every client must exist.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import jsonschema
import orjson
import yaml
from jinja2 import Environment, Template

from grid_platform.api.publications import Entity, QueryResult
from grid_platform.api.sqltemplate import (
    TemplateError,
    bind,
    bind_names,
    make_environment,
    raw_outputs,
    render,
)

log = logging.getLogger(__name__)

SPECS_DIR = Path(__file__).resolve().parent / "specs"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
SCALAR_TYPES = ("string", "integer", "number", "boolean", "date")
BASE_FIELD_TYPES = ("string", "integer", "number", "boolean", "date", "datetime", "object", "any")
SHAPES = ("envelope", "list", "feature_collection", "object")
CACHE_POLICIES = ("none", "topology")
# Names the platform puts into every template context; specs cannot declare them.
RESERVED_KEYS = {"entity", "sql_quote", "sql_list", "limit", "offset", "network_id"}
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_FIELD_TYPE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\[\])?(\?)?$")


class SpecError(ValueError):
    """A spec file is invalid (startup error)."""


class FetcherNotFound(LookupError):
    pass


class PayloadError(ValueError):
    """Payload validation failed; ``errors`` are FastAPI-style ``{type, loc, msg, input}`` items."""

    def __init__(self, errors: list[dict[str, Any]]):
        super().__init__("; ".join(e["msg"] for e in errors))
        self.errors = errors


class ShapeError(RuntimeError):
    """The backend answered with something the spec does not describe."""


class Client(Protocol):
    def entity(self, domain: str, dataset: str, network_id: str) -> Entity: ...

    def run(self, sql: str, params: dict[str, Any], *, limit: int, offset: int) -> QueryResult: ...


# --------------------------------------------------------------------------------------------
# Configuration files


def expand_env(value: Any, environ: Mapping[str, str] | None = None, where: str = "") -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of a loaded YAML document."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        def substitute(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise SpecError(f"{where}: environment variable {name} is not set and has no default")
        return _ENV_VAR.sub(substitute, value)
    if isinstance(value, list):
        return [expand_env(v, env, where) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, env, where) for k, v in value.items()}
    return value


def load_documents(pattern: str | Path, environ: Mapping[str, str] | None = None) -> list[tuple[Path, dict]]:
    """YAML documents matching a glob, in sorted order, safely loaded and env-expanded."""
    pattern = Path(pattern)
    paths = sorted(pattern.parent.glob(pattern.name))
    if not paths:
        raise SpecError(f"no fetcher spec files match {pattern}")
    documents = []
    for path in paths:
        try:
            # SafeLoader semantics (no arbitrary objects); the libyaml build when available.
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise SpecError(f"{path}: a spec file must be a mapping")
        documents.append((path, expand_env(data, environ, str(path))))
    return documents


# JSON Schema of a spec file, so typos fail at start-up with a clear path.
_PARAM_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type"],
    "properties": {
        "type": {"enum": list(SCALAR_TYPES)},
        "list": {"type": "boolean"},
        "required": {"type": "boolean"},
        "in": {"enum": ["query", "server"]},
        "payload": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"},
        "enum": {"type": "array", "minItems": 1},
        "pattern": {"type": "string"},
        "max_length": {"type": "integer", "minimum": 1},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "min_items": {"type": "integer", "minimum": 0},
        "max_items": {"type": "integer", "minimum": 1},
        "default": {},
        "default_days": {"oneOf": [{"type": "integer"},
                                   {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}]},
        "not_before": {"type": "string"},
        "description": {"type": "string"},
        "example": {},
    },
}
_FILE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "patternProperties": {"^x-": {}},  # anchors for YAML aliases
    "required": ["domain", "base_path", "fetchers"],
    "properties": {
        "domain": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        "base_path": {"type": "string", "pattern": "^/"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "macros": {"type": "string"},
        "models": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": {"type": "string"}}},
        "fetchers": {"type": "array", "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "path", "client", "dataset", "query", "response"],
            "properties": {
                "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "label": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "path": {"type": "string", "pattern": "^[a-z0-9][a-z0-9/_-]*$"},
                "summary": {"type": "string"},
                "description": {"type": "string"},
                "client": {"type": "string"},
                "dataset": {"type": "string"},
                "query": {"type": "string"},
                "limit": {"type": ["integer", "string"]},
                "offset": {"type": ["integer", "string"]},
                "cache": {"enum": list(CACHE_POLICIES)},
                "slice_by": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
                "output_mapper": {"type": "string"},
                "parameters": {"type": "object", "additionalProperties": _PARAM_SCHEMA},
                "response": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["shape", "model"],
                    "properties": {
                        "shape": {"enum": list(SHAPES)},
                        "model": {"type": "string"},
                        "feature_properties": {"enum": ["row", "feature_over_row"]},
                        "empty": {"type": "object"},
                    },
                },
            },
        }},
    },
}


_FILE_VALIDATOR = jsonschema.Draft202012Validator(_FILE_SCHEMA)


# --------------------------------------------------------------------------------------------
# Models (response shapes)


@dataclass(frozen=True)
class FieldType:
    base: str  # one of BASE_FIELD_TYPES or a model name
    is_list: bool = False
    nullable: bool = False
    optional: bool = False  # the key may be absent (e.g. risk-km columns of another level)

    @classmethod
    def parse(cls, text: str, *, optional: bool = False) -> FieldType:
        m = _FIELD_TYPE.match(text.strip())
        if not m:
            raise SpecError(f"invalid field type {text!r}")
        return cls(m.group(1), bool(m.group(2)), bool(m.group(3)), optional)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    fields: dict[str, FieldType]

    @classmethod
    def parse(cls, name: str, raw: dict[str, str]) -> ModelSpec:
        """``{field: type}``; a field name ending in ``?`` may be absent from a row."""
        return cls(name, {k.rstrip("?"): FieldType.parse(v, optional=k.endswith("?")) for k, v in raw.items()})

    @property
    def required(self) -> set[str]:
        return {k for k, t in self.fields.items() if not t.optional}


# --------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class ParamSpec:
    name: str  # query parameter name
    key: str  # payload key (``tile_id`` is forwarded as ``tile_ids``)
    type: str
    is_list: bool = False
    required: bool = False
    exposed: bool = True
    enum: tuple | None = None
    pattern: str | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    default: Any = None
    default_days: int | tuple[int, int] | None = None
    not_before: str | None = None
    description: str = ""
    example: Any = None

    def item_schema(self) -> dict[str, Any]:
        if self.type == "date":
            schema: dict[str, Any] = {"type": "string", "pattern": DATE_PATTERN, "format": "date"}
        else:
            schema = {"type": self.type}
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema

    def json_schema(self) -> dict[str, Any]:
        if not self.is_list:
            return self.item_schema()
        schema: dict[str, Any] = {"type": "array", "items": self.item_schema()}
        if self.min_items is not None:
            schema["minItems"] = self.min_items
        if self.max_items is not None:
            schema["maxItems"] = self.max_items
        return schema

    def computed_default(self, today: date) -> Any:
        """Schema defaults are values, not SQL; dates relative to today are computed here."""
        if self.default_days is None:
            return copy.deepcopy(self.default)
        if isinstance(self.default_days, int):
            return (today + timedelta(days=self.default_days)).isoformat()
        first, last = self.default_days
        return [(today + timedelta(days=d)).isoformat() for d in range(first, last + 1)]

    def sample(self) -> Any:
        """A valid value for the static render checks."""
        if self.example is not None:
            value = self.example
        elif self.enum is not None:
            value = self.enum[0]
        else:
            value = {"date": "2026-07-14", "integer": int(self.minimum or 0), "number": 1.5,
                     "boolean": True, "string": "sample"}[self.type]
        if self.is_list and not isinstance(value, list):
            value = [value]
        return value


def _parse_param(name: str, raw: dict, where: str) -> ParamSpec:
    key = raw.get("payload", name)
    if name in RESERVED_KEYS or key in RESERVED_KEYS:
        raise SpecError(f"{where}: parameter name {name!r} is reserved")
    exposed = raw.get("in", "query") == "query"
    if not exposed and raw.get("default_days") is None and raw.get("default") is None:
        raise SpecError(f"{where}: server parameter {name!r} needs a default")
    if raw.get("required") and ("default" in raw or "default_days" in raw):
        raise SpecError(f"{where}: parameter {name!r} is required and has a default")
    if "default_days" in raw and raw["type"] != "date":
        raise SpecError(f"{where}: default_days is only for date parameters ({name!r})")
    days = raw.get("default_days")
    if isinstance(days, list) and (raw.get("list") is not True or days[0] > days[1]):
        raise SpecError(f"{where}: a day range default needs a list parameter and first <= last ({name!r})")
    return ParamSpec(
        name=name, key=key, type=raw["type"], is_list=bool(raw.get("list", False)),
        required=bool(raw.get("required", False)), exposed=exposed,
        enum=tuple(raw["enum"]) if "enum" in raw else None, pattern=raw.get("pattern"),
        max_length=raw.get("max_length"), minimum=raw.get("minimum"), maximum=raw.get("maximum"),
        min_items=raw.get("min_items"), max_items=raw.get("max_items"), default=raw.get("default"),
        default_days=tuple(days) if isinstance(days, list) else days, not_before=raw.get("not_before"),
        description=raw.get("description", ""), example=raw.get("example"),
    )


# --------------------------------------------------------------------------------------------
# Fetchers


@dataclass(frozen=True)
class ResponseSpec:
    shape: str
    model: str
    feature_properties: str = "row"  # FC: "row" = row columns only; "feature_over_row" = merge
    empty: dict | None = None  # object shape: answer for an unpublished network


@dataclass
class FetchResult:
    body: Any
    truncated: bool = False
    skipped: int = 0


@dataclass(frozen=True)
class FetcherSpec:
    domain: str
    id: str
    label: str
    path: str  # full route path, e.g. /api/grid/{network_id}/risks
    summary: str
    description: str
    client: str
    dataset: str
    source: str  # template source incl. the file's macros (static checks)
    template: Template = field(repr=False, compare=False)
    params: tuple[ParamSpec, ...]
    limit: int
    offset: int
    response: ResponseSpec
    cache: str
    output_mapper: Callable[[dict], dict] | None
    digest: str  # hash of the entry: part of every ETag, so a changed spec changes ETags
    tags: tuple[str, ...] = ()
    # List parameters whose single values cut the result into cacheable slices (``slices``).
    slice_by: tuple[str, ...] = ()

    @property
    def qualified_id(self) -> str:
        return f"{self.domain}.{self.id}"

    @property
    def paged(self) -> bool:
        return self.response.shape != "object"

    def payload_schema(self) -> dict[str, Any]:
        properties = {p.key: p.json_schema() for p in self.params}
        properties["network_id"] = {"type": "string"}
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": properties,
            "required": [p.key for p in self.params if p.required],
        }

    @functools.cached_property
    def payload_validator(self) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator(self.payload_schema(), format_checker=jsonschema.FormatChecker())

    def sample_payload(self, *, full: bool) -> dict[str, Any]:
        return {p.key: p.sample() for p in self.params if p.exposed and (full or p.required)}


def _import_mapper(path: str) -> Callable[[dict], dict]:
    module, _, name = path.replace(":", ".").rpartition(".")
    try:
        mapper = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"output_mapper {path!r} cannot be imported: {exc}") from exc
    if not callable(mapper):
        raise SpecError(f"output_mapper {path!r} is not callable")
    return mapper


def _int_option(raw: Any, default: int, name: str, where: str) -> int:
    try:
        value = int(raw) if raw is not None else default
    except ValueError as exc:
        raise SpecError(f"{where}: {name} must be an integer, got {raw!r}") from exc
    if value < (1 if name == "limit" else 0):
        raise SpecError(f"{where}: {name} out of range: {value}")
    return value


class FetcherRegistry:
    """All fetchers of the loaded spec files, keyed ``{domain}.{id}``."""

    def __init__(self, fetchers: dict[str, FetcherSpec], models: dict[str, ModelSpec], env: Environment):
        self.fetchers = fetchers
        self.models = models
        self.env = env

    def get(self, qualified_id: str) -> FetcherSpec:
        try:
            return self.fetchers[qualified_id]
        except KeyError:
            raise FetcherNotFound(f"fetcher {qualified_id} not found") from None

    def __iter__(self):
        return iter(self.fetchers.values())


_ENVIRONMENT = make_environment()


@functools.lru_cache(maxsize=512)
def _compile(source: str) -> Template:
    """Templates are pure functions of their source: compile each once per process."""
    return _ENVIRONMENT.from_string(source)


def load_registry(
    pattern: str | Path = SPECS_DIR / "*.yaml",
    *,
    clients: Iterable[str] = ("publications",),
    environ: Mapping[str, str] | None = None,
) -> FetcherRegistry:
    env = _ENVIRONMENT
    known_clients = set(clients)
    models: dict[str, ModelSpec] = {}
    fetchers: dict[str, FetcherSpec] = {}
    routes: dict[str, str] = {}
    documents = load_documents(pattern, environ)
    for path, doc in documents:
        error = jsonschema.exceptions.best_match(_FILE_VALIDATOR.iter_errors(doc))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise SpecError(f"{path}: {where}: {error.message}")
        for name, raw_fields in (doc.get("models") or {}).items():
            if name in models:
                raise SpecError(f"{path}: model {name} defined twice")
            models[name] = ModelSpec.parse(name, raw_fields)
    for model in models.values():
        for fname, ftype in model.fields.items():
            if ftype.base not in BASE_FIELD_TYPES and ftype.base not in models:
                raise SpecError(f"model {model.name}.{fname}: unknown type {ftype.base}")

    for path, doc in documents:
        domain, macros = doc["domain"], doc.get("macros", "")
        base_path = doc["base_path"].rstrip("/")
        for raw in doc["fetchers"]:
            qualified = f"{domain}.{raw['id']}"
            where = f"{path.name}: {qualified}"
            if qualified in fetchers:
                raise SpecError(f"{where}: duplicate fetcher id")
            if raw["client"] not in known_clients:
                raise SpecError(f"{where}: unknown client {raw['client']!r}")
            response = ResponseSpec(**raw["response"])
            if response.model not in models:
                raise SpecError(f"{where}: unknown response model {response.model!r}")
            if response.shape == "object" and response.empty is None:
                raise SpecError(f"{where}: an object response needs an 'empty' answer")
            params = tuple(_parse_param(n, p, where) for n, p in (raw.get("parameters") or {}).items())
            keys = [p.key for p in params]
            if len(set(keys)) != len(keys):
                raise SpecError(f"{where}: two parameters share a payload key")
            for p in params:
                if p.not_before is not None and p.not_before not in keys:
                    raise SpecError(f"{where}: {p.name}.not_before names an unknown parameter")
            list_keys = {p.key for p in params if p.is_list}
            for key in raw.get("slice_by", ()):
                if key not in list_keys:
                    raise SpecError(f"{where}: slice_by {key!r} is not a list parameter")
            if raw.get("slice_by") and response.shape not in ("envelope", "list"):
                raise SpecError(f"{where}: slice_by needs an envelope or list response")
            source = f"{macros}\n{raw['query']}" if macros else raw["query"]
            try:
                template = _compile(source)
            except Exception as exc:  # jinja2.TemplateSyntaxError
                raise SpecError(f"{where}: template does not compile: {exc}") from exc
            route = f"{base_path}/{raw['path']}"
            if route in routes:
                raise SpecError(f"{where}: path {route} already served by {routes[route]}")
            routes[route] = qualified
            spec = FetcherSpec(
                domain=domain, id=raw["id"], label=raw.get("label", raw["id"]), path=route,
                summary=raw.get("summary", raw["id"]), description=raw.get("description", ""),
                client=raw["client"], dataset=raw["dataset"], source=source, template=template,
                params=params, limit=_int_option(raw.get("limit"), 100, "limit", where),
                offset=_int_option(raw.get("offset"), 0, "offset", where), response=response,
                cache=raw.get("cache", "none"),
                output_mapper=_import_mapper(raw["output_mapper"]) if "output_mapper" in raw else None,
                digest=hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16],
                tags=tuple(doc.get("tags", [domain])),
                slice_by=tuple(raw.get("slice_by", ())),
            )
            fetchers[qualified] = spec
    return FetcherRegistry(fetchers, models, env)


# --------------------------------------------------------------------------------------------
# Execution


def prepare_payload(
    spec: FetcherSpec, payload: Mapping[str, Any], *, today: date, loc: str = "payload"
) -> dict[str, Any]:
    """Copy the payload, fill defaults for absent keys and validate (the input is not mutated)."""
    prepared = {k: copy.deepcopy(v) for k, v in payload.items() if v is not None}
    for p in spec.params:
        if p.key not in prepared:
            default = p.computed_default(today)
            if default is not None:
                prepared[p.key] = default
    by_key = {p.key: p for p in spec.params}
    errors = []
    for err in sorted(spec.payload_validator.iter_errors(prepared), key=lambda e: [str(x) for x in e.absolute_path]):
        path = list(err.absolute_path)
        if path and path[0] in by_key:
            path[0] = by_key[path[0]].name
        errors.append({"type": "value_error", "loc": [loc, *path], "msg": err.message, "input": err.instance})
    if not errors:
        for p in spec.params:
            earlier = by_key[p.not_before] if p.not_before else None
            if earlier and p.key in prepared and earlier.key in prepared and prepared[p.key] < prepared[earlier.key]:
                errors.append({"type": "value_error", "loc": [loc, p.name],
                               "msg": f"{p.name} must not be before {earlier.name}", "input": prepared[p.key]})
    if errors:
        raise PayloadError(errors)
    return prepared


def render_statement(spec: FetcherSpec, entity: Entity, payload: Mapping[str, Any]) -> tuple[str, dict]:
    sql = render(spec.template, entity, payload)
    if sql.rstrip().endswith(";"):
        raise TemplateError(f"{spec.qualified_id}: a fetcher query must not end with ';'")
    return bind(sql, payload)


def _to_int(v: Any) -> int:
    number = float(v) if isinstance(v, (str, Decimal)) else v
    if isinstance(number, float):
        if not number.is_integer():
            raise ValueError(f"{v!r} is not an integer")
        return int(number)
    return int(number)


def _to_str(v: Any) -> str:
    return v.isoformat() if isinstance(v, (date, datetime)) else str(v)


def _utc(v: Any) -> Any:
    return v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v


def _json(v: Any) -> Any:
    return orjson.loads(v) if isinstance(v, (str, bytes)) else v


def _converter(ftype: FieldType | None, db_type: str, json_passthrough: bool) -> Callable[[Any], Any] | None:
    """Per-column conversion so numbers are JSON numbers and JSON text becomes JSON.

    With ``json_passthrough`` a DuckDB ``JSON`` column (already validated by the cast) is
    embedded into the response as is instead of being parsed and re-serialised.
    """
    numeric_text = db_type.startswith(("DECIMAL", "VARCHAR", "HUGEINT", "UHUGEINT"))
    if ftype is None or ftype.is_list or ftype.base not in BASE_FIELD_TYPES:
        if db_type.startswith("DECIMAL"):
            return float
        return _utc if db_type == "TIMESTAMP" else None
    base = ftype.base
    if base in ("object", "any"):
        if db_type == "JSON" and json_passthrough:
            return orjson.Fragment
        return _json if db_type in ("VARCHAR", "JSON", "BLOB") else None
    if base == "number":
        return float if numeric_text else None
    if base == "integer":
        return _to_int if numeric_text or db_type in ("DOUBLE", "FLOAT") else None
    if base == "string":
        return None if db_type == "VARCHAR" else _to_str
    if base == "datetime":
        return _utc if db_type == "TIMESTAMP" else None
    return None


def map_rows(spec: FetcherSpec, model: ModelSpec, result: QueryResult, *,
             json_passthrough: bool = False) -> list[dict[str, Any]]:
    needed = model.required if spec.response.shape != "feature_collection" else {"feature_geojson"}
    missing = needed - set(result.columns) if spec.output_mapper is None else set()
    if missing:
        raise ShapeError(f"{spec.qualified_id}: result lacks columns {sorted(missing)}")
    columns = result.columns
    plan = [(name, conv) for name, db_type in zip(columns, result.types)
            if (conv := _converter(model.fields.get(name), db_type, json_passthrough)) is not None]
    mapper = spec.output_mapper
    rows = []
    try:
        for values in result.rows:
            row = dict(zip(columns, values))
            for name, conv in plan:
                value = row[name]
                if value is not None:
                    row[name] = conv(value)
            rows.append(mapper(row) if mapper else row)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise ShapeError(f"{spec.qualified_id}: unexpected value: {exc}") from exc
    if spec.output_mapper is not None and rows and not needed <= rows[0].keys():
        raise ShapeError(f"{spec.qualified_id}: mapped rows lack {sorted(needed - rows[0].keys())}")
    return rows


def assemble_features(rows: list[dict[str, Any]], *, merge_feature_properties: bool) -> tuple[list[dict], int]:
    """GeoJSON features from rows (grid-api §3.1); rows without a usable geometry are skipped."""
    features, skipped = [], 0
    for row in rows:
        raw = row.pop("feature_geojson", None)
        row.pop("geom", None)
        if isinstance(raw, (str, bytes)):
            try:
                raw = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raw = None
        if not isinstance(raw, dict):
            skipped += 1
            continue
        geometry = raw.get("geometry") if "geometry" in raw else raw
        if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
            skipped += 1
            continue
        properties = row
        if merge_feature_properties and isinstance(raw.get("properties"), dict):
            properties = {**row, **raw["properties"]}
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    return features, skipped


def _empty_object(template: dict, payload: Mapping[str, Any]) -> dict:
    """``{"payload": key}`` values in an ``empty`` answer are taken from the payload."""
    return {k: (payload.get(v["payload"]) if isinstance(v, dict) and set(v) == {"payload"} else copy.deepcopy(v))
            for k, v in template.items()}


def execute(
    spec: FetcherSpec,
    model: ModelSpec,
    client: Client,
    entity: Entity,
    payload: Mapping[str, Any],
    *,
    limit: int | None = None,
    offset: int | None = None,
    json_passthrough: bool = False,
) -> FetchResult:
    """Render and run a prepared payload; request ``limit``/``offset`` override the spec's.

    ``json_passthrough``: JSON columns stay serialised (for HTTP bodies, see ``_converter``).
    """
    limit = spec.limit if limit is None else limit
    offset = spec.offset if offset is None else offset
    rows: list[dict[str, Any]] = []
    truncated = False
    if entity.published:
        sql, params = render_statement(spec, entity, payload)
        result = client.run(sql, params, limit=limit, offset=offset)
        truncated = len(result.rows) > limit
        if truncated:
            result = QueryResult(result.columns, result.types, result.rows[:limit])
        rows = map_rows(spec, model, result, json_passthrough=json_passthrough)
    shape = spec.response.shape
    if shape == "envelope":
        return FetchResult({"items": rows, "limit": limit, "offset": offset, "count": len(rows)}, truncated)
    if shape == "list":
        return FetchResult(rows, truncated)
    if shape == "object":
        return FetchResult(rows[0] if rows else _empty_object(spec.response.empty or {}, payload), truncated)
    features, skipped = assemble_features(rows, merge_feature_properties=spec.response.feature_properties
                                          == "feature_over_row")
    if skipped:
        log.warning("%s: skipped %d of %d rows without a usable geometry (network %s, version %s)",
                    spec.qualified_id, skipped, len(rows), entity.id, entity.version)
    return FetchResult({"type": "FeatureCollection", "features": features}, truncated, skipped)


def dumps(body: Any) -> bytes:
    """JSON bytes; NaN/±inf become null, DECIMAL values numbers."""
    return orjson.dumps(body, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        f = float(value)
        return f if math.isfinite(f) else None
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --------------------------------------------------------------------------------------------
# Static checks (run by the test-suite over every spec)


class _SampleTables(dict):
    def __missing__(self, key: str) -> str:
        return f"/published/sample/{key}.parquet"


def check_fetcher(spec: FetcherSpec, env: Environment) -> list[str]:
    """Problems of one fetcher: undeclared ``:params``, raw payload output, failed renders."""
    problems = []
    declared = {p.key for p in spec.params} | {"network_id"}
    for name in sorted(bind_names(spec.source) - declared):
        problems.append(f"{spec.qualified_id}: :{name} is not a declared parameter")
    problems += [f"{spec.qualified_id}: {p}" for p in raw_outputs(env, spec.source)]
    entity = Entity(id="sample", domain=spec.domain, dataset=spec.dataset, version="v", content_hash="h",
                    created_at="2026-07-14T06:00:00+00:00", tables=_SampleTables(), files=_SampleTables())
    for full in (False, True):
        try:
            payload = prepare_payload(spec, {**spec.sample_payload(full=full), "network_id": "sample"},
                                      today=date(2026, 7, 14))
            render_statement(spec, entity, payload)
        except (TemplateError, PayloadError) as exc:
            problems.append(f"{spec.qualified_id}: {'full' if full else 'minimal'} payload: {exc}")
    return problems
