"""Read-API benchmarks: the app under uvicorn in one process, load from another.

1. ``/shapes`` of a large network with 50 concurrent clients vs the same bytes served as a
   static file by the same server (target ratio >= 0.8), and the 304 path vs the full body
   (target >= 5x).
2. ``/risks`` for one date and one vector over a 1,000,000-row ``risks.parquet`` written by
   the risk publication writer (sorted, small row groups; a few thousand rows per answer),
   10 concurrent clients, p99 < 100 ms, three ways: both caches off (every request runs its
   Parquet query), the slice cache on (each (date, vector) slice read once per publication,
   warmed by one pass) with the response cache off, and the default server (one date and
   vector for everybody, from the ETag cache). Baseline: the same fetcher in process,
   without HTTP, uncached.

Run: ``.venv/bin/python benchmarks/bench_api.py`` (one JSON line per benchmark).
The script re-invokes itself as ``--serve`` (the server) and ``--load`` (the load generator).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-api-secret-0123456789abcdefghijkl"
NETWORK = "bench"
SHAPES = 6000
RISK_ROWS = 1_000_000
RISK_DATES = 166  # ~3000 rows per date and vector
FIRST_DATE = date(2026, 1, 1)


# ---------------------------------------------------------------------------- data


def _publish(data_dir: Path) -> None:
    from grid_platform.publish import publish
    from grid_platform.risk.publication import write_risk_table

    rng = np.random.default_rng(7)
    root = data_dir / "published"
    segment = [f"{i:032x}" for i in range(SHAPES)]
    x0 = 8.0 + rng.random(SHAPES) * 0.5
    y0 = 47.0 + rng.random(SHAPES) * 0.3
    features = [json.dumps({"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [
        [round(x + k * 0.0004, 6), round(y + k * 0.0003, 6)] for k in range(12)]}}) for x, y in zip(x0, y0)]
    text = lambda prefix, n: [f"{prefix} {i % n}" for i in range(SHAPES)]
    shapes = pd.DataFrame({
        "segment_id": segment, "asset_type": "ac_line_segment", "asset_key": text("Linie", 900),
        "line_name": text("Linie", 900), "conductor_type": rng.choice(["overhead_bare", "underground_cable"], SHAPES),
        "parent_substation_name": text("UW", 40), "operational_unit": text("Unit", 12),
        "municipality": text("Gemeinde", 80), "feeder_id": text("F", 300), "length_m": rng.random(SHAPES) * 900,
        "is_vegetated_zone": rng.random(SHAPES) > 0.5, "strike_tree_tier": rng.choice(["low", "mid", "high"], SHAPES),
        "strike_tree_multiplier": 1.2, "strike_density_per_km": rng.random(SHAPES) * 9, "strike_km_high": 0.1,
        "strike_km_mid": 0.2, "strike_km_low": 0.3, "voltage_class": "MV", "label": None, "label_id": None,
        "name": None, "thermal_tier": None, "thermal_margin_c": None, "thermal_theta_max_c": None,
        "thermal_insulation": None, "is_asphalt": None, "anno_posa": None, "technology": None, "m_r_critico": None,
        "tile_ids": [[f"tile_{i % 7}_{i % 5}"] for i in range(SHAPES)], "feature_geojson": features,
    })

    def write_topology(directory: Path) -> None:
        shapes.to_parquet(directory / "shapes.parquet", index=False)

    publish(root, "topology", NETWORK, write_topology)

    per_date = RISK_ROWS // (RISK_DATES * 2)
    dates = [FIRST_DATE + timedelta(days=d) for d in range(RISK_DATES)]
    n = per_date * RISK_DATES * 2
    risks = pd.DataFrame({
        "segment_id": [f"{i:032x}" for i in rng.integers(0, 2**62, n)],
        "date": np.repeat(dates, per_date * 2),
        "risk_vector": np.tile(np.repeat(["heat", "wind"], per_date), RISK_DATES),
        "risk_level": rng.choice(["ALERT", "WARNING"], n),
        "metrics": [json.dumps({"gust_excess": round(float(g), 2), "wind_speed_max": 11.2, "wind_gusts_max": 20.1,
                                "strike_tree_tier": "high", "escalated_by_tree_strike": False})
                    for g in rng.random(n) * 15],
    })
    risks["risk_color_hex"] = np.where(risks["risk_level"] == "ALERT", "#D00000", "#F7D000")
    risks = risks.sample(frac=1.0, random_state=7)  # the writer, not the input order, sorts

    def write_risk(directory: Path) -> None:
        write_risk_table(risks, directory / "risks.parquet")

    publish(root, "risk", NETWORK, write_risk)


# ---------------------------------------------------------------------------- server


def serve(port: int, static_dir: str) -> None:
    import uvicorn
    from fastapi.staticfiles import StaticFiles

    from grid_platform.api.app import create_app

    app = create_app()
    app.mount("/bench-static", StaticFiles(directory=static_dir), name="bench-static")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, static_dir: Path, cache_mb: int, slice_cache_mb: int = 128):
        self.port = _free_port()
        env = {**os.environ, "GRID_DATA_DIR": str(data_dir), "JWT_SECRET": SECRET,
               "STATE_DB_URL": f"sqlite:///{data_dir / 'state.db'}", "GRID_API_CACHE_MB": str(cache_mb),
               "GRID_API_SLICE_CACHE_MB": str(slice_cache_mb)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), "--static", str(static_dir)], env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("benchmark server did not start")
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# ---------------------------------------------------------------------------- load


async def _fetch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, int]:
    """One keep-alive HTTP/1.1 exchange; answers here always carry Content-Length (or none for 304)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise RuntimeError("chunked answers are not expected here")
    if length:
        await reader.readexactly(length)
    return status, length


async def _load(url: str, paths: list[str], n: int, concurrency: int, headers: dict[str, str]) -> dict:
    """A minimal asyncio HTTP/1.1 client: keeps the load generator cheap next to the server."""
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode() for p in paths]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sizes: set[int] = set()
    queue = iter(range(n))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port), limit=2**22)
        try:
            await _fetch(reader, writer, requests[0])  # warm-up: connection, caches
            await ready.wait()
            for i in queue:
                started = time.perf_counter()
                status, size = await _fetch(reader, writer, requests[i % len(requests)])
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
                sizes.add(size)
        finally:
            writer.close()

    ready = asyncio.Event()
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(0.5)
    started = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "latencies": latencies, "statuses": statuses, "sizes": sorted(sizes)}


def run_load(url: str, paths: list[str], n: int, concurrency: int, headers: dict[str, str]) -> dict:
    """Generate load from a separate process so client and server do not share an interpreter."""
    spec = json.dumps({"url": url, "paths": paths, "n": n, "concurrency": concurrency, "headers": headers})
    out = subprocess.run([sys.executable, __file__, "--load", spec], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"load generator failed on {paths[0]}:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout)
    result["statuses"] = {int(k): v for k, v in result["statuses"].items()}
    return result


def _expect(result: dict, status: int, size: int | None = None) -> None:
    if set(result["statuses"]) != {status} or (size is not None and result["sizes"] != [size]):
        raise RuntimeError(f"expected only {status} with {size} bytes, got {result['statuses']} {result['sizes']}")


def _summary(name: str, ours: dict, baseline_s: float, **extra) -> dict:
    """``ours_s`` and ``baseline_s`` are seconds per request (wall time / requests)."""
    lat = sorted(ours["latencies"])
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3
    ours_s = ours["wall_s"] / len(lat)
    return {"name": name, "n": len(lat), "ours_s": round(ours_s, 6), "baseline_s": round(baseline_s, 6),
            "ratio": round(baseline_s / ours_s, 3), "p50_ms": round(pct(0.5), 2), "p99_ms": round(pct(0.99), 2),
            "rps": round(len(lat) / ours["wall_s"], 1), **extra}


def main() -> None:
    import jwt

    token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600,
                        "organization": {NETWORK: {"type": "dso"}}}, SECRET, algorithm="HS256")
    auth = {"Authorization": f"Bearer {token}"}
    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        data_dir, static_dir = Path(tmp) / "data", Path(tmp) / "static"
        static_dir.mkdir()
        _publish(data_dir)

        # (1) shapes vs static file, 304 vs full body -- response cache on (the default).
        server = Server(data_dir, static_dir, cache_mb=256)
        try:
            import httpx

            identity = {**auth, "Accept-Encoding": "identity"}
            shapes = httpx.get(f"{server.url}/api/grid/{NETWORK}/shapes", headers=identity, timeout=120)
            shapes.raise_for_status()
            (static_dir / "shapes.json").write_bytes(shapes.content)
            static = httpx.get(f"{server.url}/bench-static/shapes.json", headers=identity, timeout=60)
            if static.content != shapes.content or len(shapes.json()["features"]) != SHAPES:
                raise RuntimeError("static file and /shapes differ")
            ours = run_load(server.url, [f"/api/grid/{NETWORK}/shapes"], 300, 50, identity)
            base = run_load(server.url, ["/bench-static/shapes.json"], 300, 50, identity)
            _expect(ours, 200, len(shapes.content))
            _expect(base, 200, len(shapes.content))
            per_request = lambda r: r["wall_s"] / len(r["latencies"])
            print(json.dumps(_summary("api_shapes_vs_static_file", ours, per_request(base), concurrency=50,
                                      body_bytes=len(shapes.content), target_ratio=0.8)), flush=True)

            not_modified = {**identity, "If-None-Match": shapes.headers["etag"]}
            cond = run_load(server.url, [f"/api/grid/{NETWORK}/shapes"], 2000, 50, not_modified)
            _expect(cond, 304, 0)
            print(json.dumps(_summary("api_shapes_304_vs_full_body", cond, per_request(ours), concurrency=50,
                                      target_ratio=5.0)), flush=True)
        finally:
            server.stop()

        # (2) risks over 1M rows, a few thousand rows per answer, 10 concurrent clients.
        dates = [FIRST_DATE + timedelta(days=d) for d in range(0, RISK_DATES, 7)]
        rotating = [f"/api/grid/{NETWORK}/risks?dates={d}&risk_vector={v}" for d in dates for v in ("wind", "heat")]
        for name, cache_mb, slice_cache_mb, paths in (
            # every request runs its Parquet query: both caches are off and dates rotate
            ("api_risks_1m_rows_uncached", 0, 0, rotating),
            # response cache off, dates rotate: answers are joined from the decoded slices
            ("api_risks_1m_rows_slice_cache", 0, 128, rotating),
            # the default server: one date and one vector for everybody, answered from the ETag cache
            ("api_risks_1m_rows_one_date_vector_default", 256, 128, rotating[:1]),
        ):
            server = Server(data_dir, static_dir, cache_mb=cache_mb, slice_cache_mb=slice_cache_mb)
            try:
                if slice_cache_mb:  # one read per slice and publication, as after a new risk run
                    _expect(run_load(server.url, paths, len(paths), 1, auth), 200)
                ours = run_load(server.url, paths, 400, 10, auth)
                _expect(ours, 200)
                summary = _summary(name, ours, _baseline_risks(data_dir, server.url, paths, auth), concurrency=10,
                                   rows_per_answer=RISK_ROWS // (RISK_DATES * 2), target_p99_ms=100,
                                   response_cache=bool(cache_mb), slice_cache=bool(slice_cache_mb),
                                   baseline="the same fetcher in process, without HTTP, uncached")
                print(json.dumps(summary), flush=True)
            finally:
                server.stop()


def _baseline_risks(data_dir: Path, url: str, paths: list[str], auth: dict[str, str]) -> float:
    """Median seconds of the same query run in process; also checks the API answers equal it."""
    import httpx
    import orjson

    from grid_platform.api.fetchers import dumps, load_registry
    from grid_platform.api.publications import PublicationStore
    from grid_platform.api.routes import GridReader

    store = PublicationStore(data_dir / "published")
    reader = GridReader(load_registry(), store, "Europe/Zurich")
    timings = []
    try:
        for path in paths[:20]:
            query = dict(part.split("=") for part in path.split("?", 1)[1].split("&"))
            payload = {"dates": [query["dates"]], "risk_vector": [query["risk_vector"]]}
            started = time.perf_counter()
            direct = reader.fetch("grid.risks", NETWORK, payload)
            timings.append(time.perf_counter() - started)
            via_http = httpx.get(url + path, headers=auth, timeout=60).json()
            if orjson.loads(dumps(direct.body)) != via_http:
                raise RuntimeError(f"API answer differs from the direct query for {path}")
    finally:
        store.close()
    return statistics.median(timings)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int)
    parser.add_argument("--static")
    parser.add_argument("--load")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.static)
    elif args.load:
        spec = json.loads(args.load)
        print(json.dumps(asyncio.run(_load(spec["url"], spec["paths"], spec["n"], spec["concurrency"],
                                           spec["headers"]))))
    else:
        main()
