"""Running stand-ins: in a background thread for tests and benchmarks, or blocking for the CLI."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

HOST = "127.0.0.1"


@contextmanager
def running(app: ASGIApp, *, startup_timeout_s: float = 10.0) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 on a free port in a daemon thread; yield its base URL.

    The socket is bound here (port 0), so there is no race between picking a port and using
    it. On exit the server stops; requests still in flight (e.g. injected hangs) are cancelled
    after one second instead of holding the shutdown.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"standin-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"stand-in server on port {port} exited during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"stand-in server on port {port} not started within {startup_timeout_s} s")
            time.sleep(0.01)
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout_s)
        sock.close()


def serve(app: ASGIApp, port: int, host: str = HOST) -> None:
    """Serve `app` until interrupted (Ctrl+C / SIGTERM). Used by `grid-platform standins`."""
    uvicorn.run(app, host=host, port=port, log_level="info", lifespan="off")
