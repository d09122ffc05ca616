"""Routes and OpenAPI schemas generated from the fetcher specs at start-up.

For each spec entry: a ``GET`` route at its path whose query parameters (types, patterns,
enums, list bounds, defaults) and response schema (envelope, FeatureCollection, list or
object of the spec's model) come from the YAML. Every route checks the policy first (a
refused read never touches the backend), then validates, answers 304 / cached bodies by
ETag, and only then queries the current publication.
"""

from __future__ import annotations

import inspect
import logging
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from grid_platform.api.caching import CachedBody, ResponseCache, accepts_gzip, if_none_match, make_etag
from grid_platform.api.fetchers import (
    DATE_PATTERN,
    FetcherRegistry,
    FetcherSpec,
    FetchResult,
    ModelSpec,
    ParamSpec,
    dumps,
    execute,
    prepare_payload,
)
from grid_platform.api.identity import Principal
from grid_platform.api.policy import PolicyEngine
from grid_platform.api.publications import BackendNotConfigured, PublicationStore
from grid_platform.api.slices import execute_sliced

log = logging.getLogger(__name__)

NETWORK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
TOPOLOGY_CACHE_CONTROL = "public, max-age=3600"
MAX_OFFSET = 1_000_000_000  # far beyond any table; keeps OFFSET within DuckDB's BIGINT


class ErrorDetail(BaseModel):
    detail: str


class UpstreamError(Exception):
    """Any backend failure of a fetcher: 502 ``upstream error: <label>`` (no upstream details)."""

    def __init__(self, label: str):
        super().__init__(label)
        self.label = label


# --------------------------------------------------------------------------------------------
# Pydantic models (OpenAPI) from the spec models


def _calendar_date(value: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a calendar date (YYYY-MM-DD)") from None
    return value


DateParam = Annotated[str, Field(pattern=DATE_PATTERN, json_schema_extra={"format": "date"}),
                      AfterValidator(_calendar_date)]
_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool,
                            "date": date, "datetime": datetime, "object": dict[str, Any], "any": Any}


class ModelFactory:
    def __init__(self, models: dict[str, ModelSpec]):
        self.models = models
        self._built: dict[tuple[str, bool], type[BaseModel]] = {}

    def model(self, name: str, *, lenient: bool = False) -> type[BaseModel]:
        """``lenient``: every field optional, extra keys allowed (feature properties)."""
        key = (name, lenient)
        if key not in self._built:
            spec = self.models[name]
            fields: dict[str, Any] = {}
            for fname, ftype in spec.fields.items():
                annotation = _SCALARS.get(ftype.base) or self.model(ftype.base)
                if ftype.is_list:
                    annotation = list[annotation]
                if ftype.nullable or lenient:
                    annotation = annotation | None
                optional = lenient or ftype.optional
                fields[fname] = (annotation, None if optional else ...)
            config = ConfigDict(extra="allow") if lenient else ConfigDict(extra="forbid")
            self._built[key] = create_model(name, __config__=config, **fields)
        return self._built[key]

    def response(self, spec: FetcherSpec) -> Any:
        shape, name = spec.response.shape, spec.response.model
        if shape == "object":
            return self.model(name)
        if shape == "list":
            return list[self.model(name)]
        if shape == "envelope":
            return create_model(f"{name}Page", __config__=ConfigDict(extra="forbid"),
                                items=(list[self.model(name)], ...), limit=(int, ...),
                                offset=(int, ...), count=(int, ...))
        feature = create_model(f"{name}Feature", type=(Literal["Feature"], ...),
                               geometry=(dict[str, Any], ...), properties=(self.model(name, lenient=True), ...))
        return create_model(f"{name}FeatureCollection", type=(Literal["FeatureCollection"], ...),
                            features=(list[feature], ...))


def _query_annotation(p: ParamSpec) -> Any:
    if p.type == "date":
        item: Any = DateParam
    elif p.enum is not None:
        item = Literal[tuple(p.enum)]
    else:
        constraints = {k: v for k, v in {"pattern": p.pattern, "max_length": p.max_length,
                                         "ge": p.minimum, "le": p.maximum}.items() if v is not None}
        item = Annotated[_SCALARS[p.type], Field(**constraints)] if constraints else _SCALARS[p.type]
    if p.is_list:
        return Annotated[list[item], Query(min_length=p.min_items, max_length=p.max_items,
                                           description=p.description or None)]
    return Annotated[item, Query(description=p.description or None)]


# --------------------------------------------------------------------------------------------
# Reading


class GridReader:
    """Runs fetchers against the current publications; shared by routes and in-process callers."""

    def __init__(self, registry: FetcherRegistry, store: PublicationStore, local_timezone: str):
        self.registry = registry
        self.store = store
        self.tz = ZoneInfo(local_timezone)

    def today(self) -> date:
        return datetime.now(self.tz).date()

    def fetch(self, fetcher_id: str, network_id: str, payload: dict[str, Any], *,
              limit: int | None = None, offset: int | None = None) -> FetchResult:
        """E.g. ``reader.fetch("grid.risk_km", "ckw", {"dates": [...]}, limit=20000)``.

        Raises PayloadError (invalid payload), BackendNotConfigured, or the backend's own
        exception -- a failed read is never an empty answer.
        """
        spec = self.registry.get(fetcher_id)
        prepared = prepare_payload(spec, {**payload, "network_id": network_id}, today=self.today())
        entity = self.store.entity(spec.domain, spec.dataset, network_id)
        return execute(spec, self.registry.models[spec.response.model], self.store, entity, prepared,
                       limit=limit, offset=offset)


def read_access(policy: PolicyEngine):
    async def dependency(
        request: Request,
        network_id: Annotated[str, Path(pattern=NETWORK_ID_PATTERN,
                                        description="The caller's DSO network alias")],
    ) -> str:
        principal: Principal = request.state.principal
        decision = policy.decide(request.state.token_key, principal, "read",
                                 resource_type="network", network_id=network_id)
        if not decision.allow:
            raise HTTPException(status_code=403, detail=decision.reason)
        return network_id

    return dependency


def _endpoint(spec: FetcherSpec, reader: GridReader, cache: ResponseCache, slices: ResponseCache, access: Any,
              cache_headers: dict[str, str]):
    model = reader.registry.models[spec.response.model]
    exposed = [p for p in spec.params if p.exposed]
    parameters = [
        inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        inspect.Parameter("network_id", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, Depends(access)]),
    ]
    for p in exposed:
        default = inspect.Parameter.empty if p.required else p.default
        parameters.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY,
                                            annotation=_query_annotation(p), default=default))
    if spec.paged:
        parameters += [
            inspect.Parameter("limit", inspect.Parameter.KEYWORD_ONLY, default=spec.limit, annotation=Annotated[
                int, Query(ge=1, le=spec.limit, description="Rows per page (at most the route limit)")]),
            inspect.Parameter("offset", inspect.Parameter.KEYWORD_ONLY, default=spec.offset, annotation=Annotated[
                int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")]),
        ]

    async def endpoint(request: Request, network_id: str, **query: Any) -> Response:
        limit = query.pop("limit", spec.limit)
        offset = query.pop("offset", spec.offset)
        payload = {p.key: query[p.name] for p in exposed if query.get(p.name) is not None}
        payload = prepare_payload(spec, {**payload, "network_id": network_id}, today=reader.today(), loc="query")
        try:
            entity = reader.store.entity(spec.domain, spec.dataset, network_id)
        except BackendNotConfigured:
            raise
        except Exception as exc:  # an unreadable publication is a backend failure, not "no data"
            log.exception("%s: publication of network %s unreadable", spec.qualified_id, network_id)
            raise UpstreamError(spec.label) from exc
        etag = make_etag(entity.content_hash, spec.qualified_id, spec.digest, payload, limit, offset)
        headers = {**cache_headers, "ETag": etag}
        if if_none_match(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        cached = cache.get(etag)
        if cached is None:
            try:
                result = None
                if spec.slice_by and slices.max_bytes:
                    result = await run_in_threadpool(execute_sliced, spec, model, reader.store, entity, payload,
                                                     limit=limit, offset=offset, cache=slices)
                if result is None:
                    result = await run_in_threadpool(execute, spec, model, reader.store, entity, payload,
                                                     limit=limit, offset=offset, json_passthrough=True)
                body = await run_in_threadpool(dumps, result.body)
            except BackendNotConfigured:
                raise
            except Exception as exc:  # every backend failure, unexpected shapes included
                log.exception("%s failed for network %s (version %s)", spec.qualified_id, network_id,
                              entity.version)
                raise UpstreamError(spec.label) from exc
            extra = {}
            if result.truncated:
                extra["X-Result-Truncated"] = "true"
            if result.skipped:
                extra["X-Skipped-Features"] = str(result.skipped)
            cached = CachedBody(body, extra)
            cache.put(etag, cached)
        headers.update(cached.headers)
        content = cached.body
        if cached.compressible:
            headers["Vary"] = ", ".join(filter(None, [headers.get("Vary"), "Accept-Encoding"]))
            if accepts_gzip(request.headers.get("accept-encoding")):
                before = cached.size
                content = (cached.gzipped() if len(cached.body) < 1 << 17
                           else await run_in_threadpool(cached.gzipped))
                cache.resize(etag, cached, before)
                headers["Content-Encoding"] = "gzip"
        return Response(content=content, media_type="application/json", headers=headers)

    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = spec.qualified_id.replace(".", "_")
    return endpoint


def add_fetcher_routes(app: FastAPI, reader: GridReader, policy: PolicyEngine, cache: ResponseCache,
                       token_header: str, slices: ResponseCache | None = None) -> None:
    """``cache``: whole response bodies by ETag; ``slices``: row slices of ``slice_by`` fetchers."""
    slices = slices or ResponseCache(0)
    models = ModelFactory(reader.registry.models)
    access = read_access(policy)
    header_docs = {
        "ETag": {"description": "Publication content hash + route + normalised query", "schema": {"type": "string"}},
        "X-Result-Truncated": {"description": "'true' when more rows exist than the limit",
                               "schema": {"type": "string", "enum": ["true"]}},
    }
    for spec in reader.registry:
        if spec.cache == "topology":
            # Topology changes when the grid is rebuilt; the network is in the path, and Vary
            # keeps a shared cache from replaying one caller's answer to another.
            cache_headers = {"Cache-Control": TOPOLOGY_CACHE_CONTROL,
                             "Vary": f"Authorization, {token_header.title()}"}
        else:
            cache_headers = {"Cache-Control": "no-store"}  # a cached risk is a stale alert
        app.add_api_route(
            spec.path,
            _endpoint(spec, reader, cache, slices, access, cache_headers),
            methods=["GET"],
            response_model=models.response(spec),
            summary=spec.summary,
            description=spec.description or None,
            operation_id=spec.qualified_id.replace(".", "_"),
            tags=list(spec.tags),
            responses={
                200: {"headers": header_docs},
                304: {"description": "Not modified: If-None-Match matched the ETag"},
                401: {"model": ErrorDetail, "description": "Missing, expired or invalid token"},
                403: {"model": ErrorDetail, "description": "Refused by the access policy (reason in detail)"},
                502: {"model": ErrorDetail, "description": f"upstream error: {spec.label}"},
                503: {"model": ErrorDetail, "description": "grid data backend not configured"},
            },
        )
