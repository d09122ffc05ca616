"""Local stand-ins of the upstream services (CKW public API, DT values, weather, meter data, nudging).

Each stand-in is a FastAPI app built by a `create_app()` factory. They share one fault-injection
mechanism (`faults.install_faults`, switchable at runtime under `/_standin/...`) and one way to
run them (`server.running` for tests and benchmarks, `server.serve` for the CLI).
"""
