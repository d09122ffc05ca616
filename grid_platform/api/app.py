"""The read API application: ``create_app``, ``serve``.

Request path: the authentication gate (before routing, so unknown paths also answer 401)
-> generated fetcher routes / account routes -> policy -> backend. Public paths are exactly
``/health``, ``/api/docs``, ``/api/redoc`` and ``/api/openapi.json``.

``/metrics`` (Prometheus text format, hidden from the OpenAPI document) is therefore not
public: grid-api.md §1 names the public paths exactly. It is the policy action
``metrics.read``, which the Rego policy grants to service accounts with ``grid.admin`` only;
Prometheus scrapes it with such a service account's bearer token
(``authorization: {credentials_file: ...}`` in the scrape config).
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from grid_platform.api.accounts import accounts_router
from grid_platform.api.analytics_routes import build_analytics_router
from grid_platform.api.caching import ResponseCache
from grid_platform.api.config import ApiConfig, load_api_config
from grid_platform.api.dispatch_routes import dispatch_router
from grid_platform.api.fetchers import FetcherNotFound, PayloadError, load_registry
from grid_platform.api.identity import AuthError, TokenVerifier, extract_token, token_key
from grid_platform.api.observability import (
    CONTENT_TYPE,
    ObservabilityMiddleware,
    RequestMetrics,
    render_metrics,
)
from grid_platform.api.policy import PolicyEngine
from grid_platform.api.publications import BackendNotConfigured, PublicationStore
from grid_platform.api.routes import GridReader, UpstreamError, add_fetcher_routes
from grid_platform.settings import Settings, load_settings
from grid_platform.store.db import make_engine, session_factory, upgrade

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/health", "/api/docs", "/api/redoc", "/api/openapi.json"})
API_PORT = 8015


class AuthGate:
    """Pure ASGI gate: every non-public request needs a valid token, decided before routing."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, header_name: str):
        self.app = app
        self.verifier = verifier
        self.header_name = header_name.lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = extract_token(headers, self.header_name)
        if token is None:
            await self._deny("Missing authentication token", scope, receive, send)
            return
        try:
            principal = self.verifier.cached(token)
            if principal is None:
                # A JWKS lookup is blocking network I/O: keep it off the event loop.
                principal = (await anyio.to_thread.run_sync(self.verifier.verify, token)
                             if self.verifier.uses_jwks else self.verifier.verify(token))
        except AuthError as exc:
            await self._deny(exc.detail, scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["token_key"] = token_key(token)
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(detail: str, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class Health(BaseModel):
    status: str
    publications: dict[str, Any]
    state_db: dict[str, Any]


def _json_error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def create_app(settings: Settings | None = None, *, config: ApiConfig | None = None) -> FastAPI:
    """Build the read API; refuses to start outside CELINE_ENV=dev without a policy bundle."""
    settings = settings or load_settings()
    config = config or load_api_config()
    policy = PolicyEngine(config.policy_dir, dev=config.dev, cache_ttl_s=config.decision_cache_ttl_s)
    if not policy.loaded:
        if not config.dev:
            raise RuntimeError(f"refusing to start without a policy bundle: {policy.load_error}")
        log.error("NO POLICY BUNDLE (%s): CELINE_ENV=dev, every request will be ALLOWED", policy.load_error)
    if config.uses_dev_secret:
        log.warning("tokens are verified with the built-in development secret; set JWT_SECRET or OIDC_JWKS_URL")
    registry = load_registry(config.specs_glob)
    store = PublicationStore(settings.published_dir, threads=config.duckdb_threads,
                             timeout_s=config.query_timeout_s)
    upgrade(settings.state_db_url)
    engine = make_engine(settings.state_db_url)
    reader = GridReader(registry, store, settings.local_timezone)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        store.close()
        engine.dispose()

    app = FastAPI(
        title="grid_platform read API",
        version="1.0.0",
        description="Grid risk, topology and alert-rule API over the platform's published outputs.",
        docs_url="/api/docs",
        redoc_url="/api/redoc",
        openapi_url="/api/openapi.json",
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    app.state.settings, app.state.config, app.state.reader, app.state.policy = settings, config, reader, policy

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI's only 400: a body that is not decodable JSON. §4 wants 422 for bad bodies.
            return _json_error(422, [{"type": "body_unparseable", "loc": ["body"], "msg": str(exc.detail),
                                      "input": None}])
        return await http_exception_handler(request, exc)

    @app.exception_handler(PayloadError)
    async def _payload_error(_request: Request, exc: PayloadError) -> JSONResponse:
        return _json_error(422, exc.errors)

    @app.exception_handler(UpstreamError)
    async def _upstream_error(_request: Request, exc: UpstreamError) -> JSONResponse:
        return _json_error(502, f"upstream error: {exc.label}")

    @app.exception_handler(BackendNotConfigured)
    async def _not_configured(_request: Request, _exc: BackendNotConfigured) -> JSONResponse:
        return _json_error(503, "grid data backend not configured")

    @app.exception_handler(FetcherNotFound)
    async def _no_fetcher(_request: Request, exc: FetcherNotFound) -> JSONResponse:
        return _json_error(404, str(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _json_error(500, "Internal Server Error")

    @app.get("/health", response_model=Health, tags=["health"])
    def health() -> dict[str, Any]:
        """Liveness plus whether publications and the state database are readable, and data age."""
        publications: dict[str, Any] = {"readable": False, "datasets": {}}
        try:
            if store.configured() and os.access(store.root, os.R_OK | os.X_OK):
                publications = {"readable": True, "datasets": store.freshness()}
        except OSError as exc:
            log.warning("publication root unreadable: %s", exc)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            state_db = {"readable": True}
        except SQLAlchemyError as exc:
            log.warning("state database unreadable: %s", exc)
            state_db = {"readable": False}
        ok = (publications["readable"] and state_db["readable"]
              and not any(d["unreadable"] for d in publications["datasets"].values()))
        return {"status": "ok" if ok else "degraded", "publications": publications, "state_db": state_db}

    @app.get("/api/ping", include_in_schema=False)
    def ping() -> dict[str, bool]:
        return {"ok": True}

    request_metrics = RequestMetrics()

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        decision = policy.decide(request.state.token_key, request.state.principal, "metrics.read",
                                 resource_type="metrics")
        if not decision.allow:
            return _json_error(403, decision.reason)
        return Response(render_metrics(request_metrics, store), media_type=CONTENT_TYPE)

    app.include_router(accounts_router(policy, session_factory(engine),
                                       allow_local_webhooks=config.allow_local_webhooks))
    add_fetcher_routes(app, reader, policy, ResponseCache(config.response_cache_bytes), config.jwt_header_name,
                       slices=ResponseCache(config.slice_cache_bytes))
    # Suggestions, commitments, points and leaderboard (flexibility.md) in the same application.
    from grid_platform.api.flexibility_routes import build_flexibility_router

    app.include_router(build_flexibility_router(settings, config, engine))
    app.include_router(dispatch_router(policy, session_factory(engine)))  # dispatch history of a network
    app.include_router(build_analytics_router(policy, settings.published_dir))  # cascade from any asset
    app.add_middleware(AuthGate, verifier=TokenVerifier(config), header_name=config.jwt_header_name)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(ObservabilityMiddleware, metrics=request_metrics)  # outermost: sees the gate's 401s
    return app


def serve(host: str = "127.0.0.1", port: int = API_PORT) -> None:
    """Run the API with uvicorn (``grid-platform api``)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The JSON lines of grid_platform.api.access replace uvicorn's access log.
    logging.getLogger("grid_platform.api.access").propagate = False
    access = logging.StreamHandler()
    access.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("grid_platform.api.access").addHandler(access)
    uvicorn.run(create_app(), host=host, port=port, log_level="info", proxy_headers=True, access_log=False)
