"""Identity (alerts-and-access.md §6): token extraction, verification, claims.

The token comes from the ``JWT_HEADER_NAME`` header (default ``x-auth-request-access-token``,
set by oauth2-proxy), else ``Authorization: Bearer``. Tokens are verified with HS256 and
``JWT_SECRET`` locally, or RS256 against the issuer's JWKS (``OIDC_JWKS_URL``) in production.
``organization`` is the Keycloak 26 organisation claim: a map alias -> ``{id, type,
attributes: {type: [...]}, groups: [...]}``; the alias of a DSO organisation is the network id.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import jwt

from grid_platform.api.config import ApiConfig, load_api_config

log = logging.getLogger(__name__)

V = TypeVar("V")


class TTLCache(Generic[V]):
    """A small thread-safe LRU whose entries also expire (per entry deadline)."""

    def __init__(self, maxsize: int, ttl_s: float):
        self.maxsize, self.ttl_s = maxsize, ttl_s
        self._data: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] <= time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return hit[1]

    def put(self, key: Hashable, value: V, ttl_s: float | None = None) -> None:
        ttl = self.ttl_s if ttl_s is None else min(ttl_s, self.ttl_s)
        if ttl <= 0:
            return
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)


class AuthError(Exception):
    """401 with ``detail`` as the body."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Organization:
    alias: str
    id: str | None
    types: tuple[str, ...]
    groups: tuple[str, ...]

    @property
    def is_dso(self) -> bool:
        return "dso" in self.types


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_organizations(claim: Any) -> dict[str, Organization]:
    """The ``organization`` claim as a map alias -> Organization.

    Keycloak 26 sends a map when attributes are mapped and a plain list of aliases otherwise;
    a bare alias string is accepted too. A DSO is an organisation whose top-level ``type`` is
    or contains ``dso``, or whose ``attributes.type`` contains it (case-insensitive).
    """
    if isinstance(claim, str):
        claim = [claim]
    if isinstance(claim, list):
        claim = {alias: {} for alias in claim if isinstance(alias, str)}
    if not isinstance(claim, dict):
        return {}
    organizations = {}
    for alias, details in claim.items():
        if not isinstance(alias, str) or not alias:
            continue
        details = details if isinstance(details, dict) else {}
        attributes = details.get("attributes") if isinstance(details.get("attributes"), dict) else {}
        types = [*_as_list(details.get("type")), *_as_list(attributes.get("type"))]
        organizations[alias] = Organization(
            alias=alias,
            id=details.get("id") if isinstance(details.get("id"), str) else None,
            types=tuple(sorted({t.strip().lower() for t in types if isinstance(t, str)})),
            groups=tuple(g for g in _as_list(details.get("groups")) if isinstance(g, str)),
        )
    return organizations


@dataclass(frozen=True)
class Principal:
    sub: str
    claims: dict[str, Any] = field(repr=False)
    organizations: dict[str, Organization]
    scopes: frozenset[str]

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        scope = claims.get("scope")
        scopes = scope.split() if isinstance(scope, str) else [s for s in _as_list(scope) if isinstance(s, str)]
        return cls(sub=str(claims["sub"]), claims=dict(claims),
                   organizations=parse_organizations(claims.get("organization")), scopes=frozenset(scopes))

    @property
    def dso_networks(self) -> list[str]:
        return sorted(alias for alias, org in self.organizations.items() if org.is_dso)

    @property
    def subject_type(self) -> str:
        # Organisations first, so a user token is never judged under service rules.
        if self.organizations:
            return "user"
        username = self.claims.get("preferred_username")
        if isinstance(username, str) and username.startswith("service-account-"):
            return "service"
        return "user"

    def claim(self, name: str) -> str | None:
        value = self.claims.get(name)
        return value if isinstance(value, str) else None


def extract_token(headers: Mapping[str, str], header_name: str) -> str | None:
    """The configured header wins; else ``Authorization: Bearer`` (scheme case-insensitive)."""
    token = (headers.get(header_name) or "").strip()
    if token:
        return token
    scheme, _, credentials = (headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenVerifier:
    def __init__(self, config: ApiConfig):
        self.config = config
        self._jwks = (jwt.PyJWKClient(config.oidc_jwks_url, cache_keys=True, lifespan=300, timeout=5)
                      if config.oidc_jwks_url else None)
        self._cache: TTLCache[Principal] = TTLCache(maxsize=4096, ttl_s=60)

    @property
    def uses_jwks(self) -> bool:
        return self._jwks is not None

    def cached(self, token: str) -> Principal | None:
        return self._cache.get(token_key(token))

    def verify(self, token: str) -> Principal:
        """Verify signature, expiry (and issuer/audience when configured); may fetch the JWKS."""
        key = token_key(token)
        principal = self._cache.get(key)
        if principal is not None:
            return principal
        try:
            if self._jwks is not None:
                signing_key: Any = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
            else:
                signing_key, algorithms = self.config.jwt_secret, ["HS256"]
            claims = jwt.decode(
                token, signing_key, algorithms=algorithms,
                issuer=self.config.oidc_issuer, audience=self.config.jwt_audience,
                options={"require": ["exp", "sub"], "verify_aud": self.config.jwt_audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("Token has expired") from None
        except jwt.PyJWKClientConnectionError as exc:
            log.error("IdP outage: JWKS at %s unreachable: %s", self.config.oidc_jwks_url, exc)
            raise AuthError("Invalid token: identity provider keys unavailable") from None
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
            raise AuthError(f"Invalid token: {exc}") from None
        principal = Principal.from_claims(claims)
        self._cache.put(key, principal, ttl_s=float(claims["exp"]) - time.time())
        return principal


def mint_token(
    sub: str,
    *,
    organizations: Iterable[str] | Mapping[str, Any] = (),
    scopes: Iterable[str] | str = (),
    email: str | None = None,
    expires_in: int = 3600,
    config: ApiConfig | None = None,
    **claims: Any,
) -> str:
    """An HS256 token for local use (``grid-platform token``), signed with ``JWT_SECRET``.

    ``organizations`` is a list of DSO aliases (each becomes a Keycloak-style DSO entry) or
    a ready ``organization`` claim map. Extra keyword claims (``name``, ``locale``,
    ``preferred_username``…) are added verbatim.
    """
    config = config or load_api_config()
    if config.oidc_jwks_url:
        raise RuntimeError("OIDC_JWKS_URL is set: the API verifies RS256 tokens of the IdP, "
                           "a locally minted HS256 token would be rejected")
    if isinstance(organizations, Mapping):
        organization: Any = dict(organizations)
    else:
        organization = {alias: {"type": "dso", "attributes": {"type": ["dso"]}, "groups": []}
                        for alias in organizations}
    now = int(time.time())
    payload: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(expires_in),
                               "scope": scopes if isinstance(scopes, str) else " ".join(scopes)}
    if organization:
        payload["organization"] = organization
    if email is not None:
        payload["email"] = email
    if config.oidc_issuer:
        payload["iss"] = config.oidc_issuer
    payload.update(claims)
    return jwt.encode(payload, config.jwt_secret, algorithm="HS256")


def primary_subtag(tag: str | None) -> str | None:
    """``de-CH`` -> ``de``; None for an empty or non-alphabetic tag."""
    if not isinstance(tag, str):
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary.isalpha() and primary.isascii() else None


def accept_language_locale(header: str | None) -> str | None:
    """Best ``Accept-Language`` entry by q (ties keep order, ``*`` skipped, q=0 dropped)."""
    ranked = []
    for position, entry in enumerate((header or "").split(",")):
        tag, *params = [part.strip() for part in entry.split(";")]
        if not tag or tag == "*":
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = -1.0
        if not 0 < q <= 1:  # also drops NaN and unparseable weights
            continue
        ranked.append((-q, position, tag))
    for _, _, tag in sorted(ranked):
        locale = primary_subtag(tag)
        if locale:
            return locale
    return None


def locale_for(principal: Principal, accept_language: str | None) -> str | None:
    return primary_subtag(principal.claim("locale")) or accept_language_locale(accept_language)
