"""Identity (alerts-and-access.md §6): tokens, JWKS, organisations, locale."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grid_api_fixtures import TEST_SECRET, dso, make_config, sign

from grid_platform.api.config import ApiConfig
from grid_platform.api.identity import (
    AuthError,
    Principal,
    TokenVerifier,
    accept_language_locale,
    extract_token,
    mint_token,
    parse_organizations,
    primary_subtag,
)


def test_token_extraction_precedence():
    header = "x-auth-request-access-token"
    assert extract_token({header: "a", "authorization": "Bearer b"}, header) == "a"
    assert extract_token({"authorization": "bearer   b "}, header) == "b"
    assert extract_token({"authorization": "BEARER b"}, header) == "b"
    assert extract_token({"authorization": "Basic dXNlcjpwdw=="}, header) is None
    assert extract_token({"authorization": "Bearer"}, header) is None
    assert extract_token({header: "  ", "authorization": "Bearer c"}, header) == "c"
    assert extract_token({"x-token": "t"}, "x-token") == "t"


def test_hs256_verification():
    verifier = TokenVerifier(make_config())
    principal = verifier.verify(sign({"sub": "u1", "organization": dso("ckw"), "scope": "grid.read other"}))
    assert principal.sub == "u1" and principal.dso_networks == ["ckw"]
    assert principal.scopes == {"grid.read", "other"}
    with pytest.raises(AuthError, match="^Token has expired$"):
        verifier.verify(sign({"sub": "u1"}, expires_in=-10))
    with pytest.raises(AuthError, match="^Invalid token: Signature verification failed"):
        verifier.verify(sign({"sub": "u1"}, secret="another-secret-of-sufficient-length!!"))
    with pytest.raises(AuthError, match="^Invalid token: "):
        verifier.verify("not.a.jwt")
    with pytest.raises(AuthError, match="^Invalid token: .*sub"):
        verifier.verify(jwt.encode({"exp": int(time.time()) + 60}, TEST_SECRET, algorithm="HS256"))
    with pytest.raises(AuthError, match="^Invalid token: .*exp"):
        verifier.verify(jwt.encode({"sub": "u"}, TEST_SECRET, algorithm="HS256"))
    unsigned = jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(AuthError, match="^Invalid token: "):
        verifier.verify(unsigned)


def test_issuer_is_checked_when_configured():
    verifier = TokenVerifier(make_config(oidc_issuer="https://idp.example/realms/celine"))
    with pytest.raises(AuthError, match="Invalid token: .*iss"):
        verifier.verify(sign({"sub": "u", "iss": "https://evil.example"}))
    assert verifier.verify(sign({"sub": "u", "iss": "https://idp.example/realms/celine"})).sub == "u"


def test_cached_principal_still_expires():
    verifier = TokenVerifier(make_config())
    token = sign({"sub": "u"}, expires_in=1)
    assert verifier.verify(token).sub == "u"
    time.sleep(1.2)
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jwks_server():
    """A JWKS endpoint on 127.0.0.1 serving the public half of a freshly generated RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield key, f"http://127.0.0.1:{server.server_address[1]}/realms/celine/protocol/openid-connect/certs"
    server.shutdown()
    server.server_close()


def test_rs256_via_jwks(jwks_server):
    key, url = jwks_server
    verifier = TokenVerifier(ApiConfig(oidc_jwks_url=url))
    now = int(time.time())
    good = jwt.encode({"sub": "u-rs", "exp": now + 60, "organization": dso("ckw")}, key, algorithm="RS256",
                      headers={"kid": "k1"})
    assert verifier.verify(good).dso_networks == ["ckw"]
    expired = jwt.encode({"sub": "u", "exp": now - 60}, key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(AuthError, match="^Token has expired$"):
        verifier.verify(expired)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"sub": "u", "exp": now + 60}, other, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(AuthError, match="^Invalid token: "):
        verifier.verify(forged)
    hs_token = sign({"sub": "u"}, secret="a" * 40)  # an HS256 token must not pass in JWKS mode
    with pytest.raises(AuthError, match="^Invalid token: "):
        verifier.verify(hs_token)
    with pytest.raises(RuntimeError, match="OIDC_JWKS_URL"):
        mint_token("u", config=ApiConfig(oidc_jwks_url=url))


def test_jwks_unreachable_is_401_and_logged_as_idp_outage(caplog):
    verifier = TokenVerifier(ApiConfig(oidc_jwks_url=f"http://127.0.0.1:{_free_port()}/certs"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, key, algorithm="RS256", headers={"kid": "k1"})
    with caplog.at_level(logging.ERROR, logger="grid_platform.api.identity"), \
            pytest.raises(AuthError, match="^Invalid token: identity provider keys unavailable$"):
        verifier.verify(token)
    assert any("IdP outage" in r.getMessage() for r in caplog.records)


def test_organisation_claim_forms():
    keycloak = {
        "ckw": {"id": "1", "type": "dso", "groups": ["/operators"]},
        "ewl": {"id": "2", "attributes": {"type": ["DSO", "utility"]}},
        "coop": {"id": "3", "type": ["energy-community"]},
        "both": {"type": ["energy-community", "dso"]},
    }
    orgs = parse_organizations(keycloak)
    assert {a for a, o in orgs.items() if o.is_dso} == {"ckw", "ewl", "both"}
    assert orgs["ckw"].groups == ("/operators",)
    assert not any(o.is_dso for o in parse_organizations(["ckw", "ewl"]).values())  # bare aliases: no type
    assert list(parse_organizations("ckw")) == ["ckw"]
    assert parse_organizations(None) == {} and parse_organizations(42) == {}
    principal = Principal.from_claims({"sub": "u", "organization": keycloak})
    assert principal.dso_networks == ["both", "ckw", "ewl"]  # sorted, position in the token irrelevant


@pytest.mark.parametrize("claims, expected", [
    ({"organization": dso("ckw")}, "user"),
    ({"organization": ["coop"], "preferred_username": "service-account-x"}, "user"),  # orgs checked first
    ({"preferred_username": "service-account-grid"}, "service"),
    ({"preferred_username": "alice"}, "user"),
    ({}, "user"),
])
def test_subject_type(claims, expected):
    assert Principal.from_claims({"sub": "s", **claims}).subject_type == expected


@pytest.mark.parametrize("header, expected", [
    ("de-CH,de;q=0.9,en;q=0.8", "de"),
    ("en;q=0.5, fr;q=0.9", "fr"),
    ("it;q=0.8, fr;q=0.8", "it"),  # ties keep order
    ("*, en;q=0.1", "en"),
    ("de;q=0, fr;q=0.2", "fr"),
    ("de;q=abc, en", "en"),
    ("*;q=1", None),
    ("", None),
    (None, None),
])
def test_accept_language(header, expected):
    assert accept_language_locale(header) == expected


def test_primary_subtag():
    assert primary_subtag("de-CH") == "de" and primary_subtag("IT") == "it" and primary_subtag("fr_CH") == "fr"
    assert primary_subtag("") is None and primary_subtag(None) is None and primary_subtag("1-x") is None


def test_mint_token_round_trip():
    config = make_config()
    token = mint_token("ops", organizations=["ckw"], scopes=["grid.read"], email="ops@example.ch",
                       expires_in=120, config=config, name="Ops")
    principal = TokenVerifier(config).verify(token)
    assert principal.dso_networks == ["ckw"] and principal.scopes == {"grid.read"}
    assert principal.claim("email") == "ops@example.ch" and principal.claim("name") == "Ops"
    raw = {"ckw": {"type": "dso", "groups": ["/a"]}}
    assert TokenVerifier(config).verify(mint_token("x", organizations=raw, config=config)).organizations["ckw"].groups == ("/a",)
