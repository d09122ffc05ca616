"""Read-API configuration from the environment (identity, policy, limits).

Paths and the state database come from ``grid_platform.settings``; this module adds what only
the API reads. Outside ``CELINE_ENV=dev`` the API refuses to start without a policy bundle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from grid_platform.settings import PROJECT_ROOT

# Local development only: tokens minted by `grid-platform token` verify against it.
DEV_JWT_SECRET = "grid-platform-local-development-secret-do-not-deploy"
DEFAULT_JWT_HEADER = "x-auth-request-access-token"


@dataclass(frozen=True)
class ApiConfig:
    jwt_secret: str = DEV_JWT_SECRET
    oidc_jwks_url: str | None = None  # set: RS256 tokens verified against the issuer's JWKS
    oidc_issuer: str | None = None  # set: the `iss` claim must match
    jwt_audience: str | None = None  # set: the `aud` claim must contain it
    jwt_header_name: str = DEFAULT_JWT_HEADER
    celine_env: str = "production"
    allow_local_webhooks: bool = False
    policy_dir: Path = PROJECT_ROOT / "policies"
    specs_glob: Path = Path(__file__).resolve().parent / "specs" / "*.yaml"
    query_timeout_s: float = 30.0
    duckdb_threads: int = 1
    response_cache_bytes: int = 256 * 2**20
    slice_cache_bytes: int = 128 * 2**20  # decoded row slices (api/slices.py); 0 turns it off
    decision_cache_ttl_s: float = 30.0

    @property
    def dev(self) -> bool:
        return self.celine_env == "dev"

    @property
    def uses_dev_secret(self) -> bool:
        return self.oidc_jwks_url is None and self.jwt_secret == DEV_JWT_SECRET


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def load_api_config(environ: Mapping[str, str] | None = None) -> ApiConfig:
    env = os.environ if environ is None else environ
    get = lambda name: env.get(name) or None
    defaults = ApiConfig()
    config = ApiConfig(
        jwt_secret=get("JWT_SECRET") or DEV_JWT_SECRET,
        oidc_jwks_url=get("OIDC_JWKS_URL"),
        oidc_issuer=get("OIDC_ISSUER"),
        jwt_audience=get("JWT_AUDIENCE"),
        jwt_header_name=(get("JWT_HEADER_NAME") or DEFAULT_JWT_HEADER).lower(),
        celine_env=(get("CELINE_ENV") or defaults.celine_env).lower(),
        allow_local_webhooks=_flag(get("GRID_ALLOW_LOCAL_WEBHOOKS")),
        policy_dir=Path(get("GRID_POLICY_DIR") or defaults.policy_dir),
        specs_glob=Path(get("GRID_API_SPECS") or defaults.specs_glob),
        query_timeout_s=float(get("GRID_API_QUERY_TIMEOUT_S") or defaults.query_timeout_s),
        duckdb_threads=int(get("GRID_API_DUCKDB_THREADS") or defaults.duckdb_threads),
        response_cache_bytes=int(float(get("GRID_API_CACHE_MB") or 256) * 2**20),
        slice_cache_bytes=int(float(get("GRID_API_SLICE_CACHE_MB") or 128) * 2**20),
        decision_cache_ttl_s=float(get("GRID_API_DECISION_TTL_S") or defaults.decision_cache_ttl_s),
    )
    return config
