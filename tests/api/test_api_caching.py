"""ETag / 304, Cache-Control, gzip and pick-up of new publications (grid-api.md §2)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pandas as pd
import pytest
import uvicorn
from grid_api_fixtures import (
    D0,
    local_today,
    make_config,
    make_settings,
    publish_risk,
    publish_topology,
    read_paths,
    risk_tables,
)

from grid_platform.api.app import create_app
from grid_platform.api.caching import accepts_gzip, if_none_match

TOPOLOGY = ("tile-index", "shapes", "tree-strike-spans")


@pytest.mark.parametrize("path", read_paths())
def test_etag_and_304_on_every_read(client, token, path):
    first = client.get(path, headers=token())
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    again = client.get(path, headers={**token(sub="someone-else"), "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert again.headers["cache-control"] == first.headers["cache-control"]
    stale = client.get(path, headers={**token(), "If-None-Match": 'W/"0000", "1111"'})
    assert stale.status_code == 200 and stale.content == first.content


@pytest.mark.parametrize("path", read_paths())
def test_cache_control(client, token, path):
    headers = client.get(path, headers=token()).headers
    if any(f"/{t}" in path for t in TOPOLOGY):
        assert headers["cache-control"] == "public, max-age=3600"
        vary = {v.strip().lower() for v in headers["vary"].split(",")}
        assert {"authorization", "x-auth-request-access-token"} <= vary
    else:
        assert headers["cache-control"] == "no-store"


def test_etag_depends_on_query_and_route(client, token):
    a = client.get(f"/api/grid/ckw/risks?dates={D0}", headers=token()).headers["etag"]
    b = client.get(f"/api/grid/ckw/risks?dates={D0}&risk_vector=wind", headers=token()).headers["etag"]
    c = client.get(f"/api/grid/ckw/risks?dates={D0}&unknown=1", headers=token()).headers["etag"]
    d = client.get(f"/api/grid/ewl/risks?dates={D0}", headers=token(networks=("ewl",))).headers["etag"]
    assert len({a, b, d}) == 3 and a == c


def test_gzip_is_served_precompressed(client, token):
    plain = client.get("/api/grid/ckw/shapes", headers={**token(), "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    zipped = client.get("/api/grid/ckw/shapes", headers={**token(), "Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.content == plain.content  # httpx decodes
    assert "accept-encoding" in zipped.headers["vary"].lower()
    docs = client.get("/api/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert docs.headers["content-encoding"] == "gzip"  # other large bodies via GZipMiddleware


def test_header_helpers():
    assert if_none_match('"abc"', 'W/"abc"') and if_none_match('W/"x", W/"abc"', 'W/"abc"')
    assert if_none_match("*", 'W/"abc"') and not if_none_match(None, 'W/"abc"')
    assert accepts_gzip("gzip, deflate, br") and accepts_gzip("*") and not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("identity") and not accepts_gzip(None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(tmp_path):
    """The app served by uvicorn on a free 127.0.0.1 port, stopped after the test."""
    port = _free_port()
    app = create_app(make_settings(tmp_path), config=make_config())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", tmp_path / "published"
    server.should_exit = True
    thread.join(timeout=10)


def test_new_publication_is_served_without_restart(live_server, token):
    url, root = live_server
    today = local_today()
    publish_topology(root, "ckw")
    publish_risk(root, "ckw", today)
    with httpx.Client(base_url=url, headers=token(), timeout=30) as http:
        first = http.get(f"/api/grid/ckw/risks?dates={D0}")
        assert first.status_code == 200 and first.json()["count"] == 2
        etag = first.headers["etag"]
        assert http.get(f"/api/grid/ckw/risks?dates={D0}", headers={"If-None-Match": etag}).status_code == 304

        tables = risk_tables("ckw", today)
        extra = pd.DataFrame([{"segment_id": "f" * 32, "date": today, "risk_vector": "wind", "risk_level": "ALERT",
                               "risk_color_hex": "#D00000", "metrics": "{}"}])
        publish_risk(root, "ckw", today, replace={"risks.parquet": pd.concat([tables["risks.parquet"], extra])})
        second = http.get(f"/api/grid/ckw/risks?dates={D0}", headers={"If-None-Match": etag})
        assert second.status_code == 200 and second.json()["count"] == 3
        assert second.headers["etag"] != etag

        zipped = http.get("/api/grid/ckw/shapes", headers={"Accept-Encoding": "gzip"})
        raw = http.get("/api/grid/ckw/shapes", headers={"Accept-Encoding": "identity"})
        assert zipped.headers["content-encoding"] == "gzip" and zipped.content == raw.content
        assert int(zipped.headers["content-length"]) < len(raw.content)
        assert http.get("/health").json()["status"] == "ok"
