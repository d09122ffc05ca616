"""`grid-platform` command line: local stand-ins, the read API, tokens and the first materialisation."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from grid_platform.settings import STANDIN_PORTS, load_settings

# Stand-in modules named other than their service key.
STANDIN_MODULES = {"dt": "digital_twin"}


def _standin_apps() -> dict:
    """Every stand-in the platform ships, by name (ports in settings.STANDIN_PORTS)."""
    import importlib

    apps = {}
    for name in STANDIN_PORTS:
        try:
            module = importlib.import_module(f"grid_platform.standins.{STANDIN_MODULES.get(name, name)}")
        except ModuleNotFoundError:
            continue
        try:
            apps[name] = module.create_app()
        except Exception as exc:  # one stand-in missing its data must not take the others down
            print(f"stand-in {name} not started: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    return apps


def cmd_standins(args: argparse.Namespace) -> int:
    from grid_platform.standins.server import serve

    apps = _standin_apps()
    wanted = args.only or list(apps)
    threads = []
    for name in wanted:
        t = threading.Thread(target=serve, args=(apps[name], STANDIN_PORTS[name]), name=name, daemon=True)
        t.start()
        threads.append(t)
        print(f"stand-in {name}: http://127.0.0.1:{STANDIN_PORTS[name]}", flush=True)
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from grid_platform.api.app import serve

    serve(args.host, args.port)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from grid_platform.api.identity import mint_token

    print(mint_token(args.sub, organizations=args.org, scopes=args.scope, email=args.email,
                     expires_in=args.expires_in))
    return 0


def _wait_for(url: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up within {timeout_s:.0f} s")
        time.sleep(1)


def bootstrap_phases(today: date, now_local: datetime) -> list[list[tuple[str, dict[str, str]]]]:
    """The first materialisation as phases of (job, tags) that run in parallel within a phase:
    a week of CKW data, the live feed, the demo community's forecast and yesterday's meter data
    (the settlement sensor follows it); then the call log and the community's flexibility windows
    over the loaded prices; then the BI marts and the participants' suggestions.
    Networks are built by the registry sensor as soon as Dagster runs."""
    from grid_platform.flexibility.config import DEMO_COMMUNITY

    last_price_day = today + timedelta(days=1) if (now_local.hour, now_local.minute) >= (11, 30) else today
    yesterday = today - timedelta(days=1)
    yesterday_utc = now_local.astimezone(UTC).date() - timedelta(days=1)

    def day_range(first: date, last: date) -> dict[str, str]:
        return {"dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat()}

    def community_day(day: date) -> dict[str, str]:
        return {"dagster/partition": f"{DEMO_COMMUNITY}|{day.isoformat()}",
                "dagster/partition/community": DEMO_COMMUNITY, "dagster/partition/date": day.isoformat()}

    price_days = [today + timedelta(days=n) for n in range((last_price_day - today).days + 1)]
    return [
        [("ckw_prices_job", day_range(today - timedelta(days=7), last_price_day)),
         ("ckw_tra_signals_job", day_range(yesterday - timedelta(days=7), yesterday)),
         ("ckw_plant_job", {}),
         ("flex_forecast_job", {}),
         ("flex_meter_job", {"dagster/partition": yesterday_utc.isoformat()})],
        [("ckw_connectivity_job", {}), *[("flex_windows_job", community_day(day)) for day in price_days]],
        [("ckw_marts_job", {}), ("flex_suggestions_job", {})],
    ]


REFERENCE_YEAR_DAYS = 365
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}"""


def reference_year_partitions(today: date, network_ids: list[str]) -> list[str]:
    """The risk partitions (``date|network``) of the year before ``today``: the reference weather
    replayed through the risk model, so that last month's marts have data from the first run."""
    days = [today - timedelta(days=n) for n in range(REFERENCE_YEAR_DAYS, 0, -1)]
    return [f"{day.isoformat()}|{network_id}" for network_id in sorted(network_ids) for day in days]


def _run_phase(client, phase: list[tuple[str, dict[str, str]]], started: float) -> None:
    runs = {}
    for job, tags in phase:
        # Ahead of the automation runs that the first loads trigger, in the queue and in the pool.
        tags = {**tags, "dagster/priority": "10"}
        runs[client.submit_job_execution(job, repository_location_name="grid_platform", tags=tags)] = job
        print(f"bootstrap: submitted {job} {tags}", flush=True)
    while runs:
        time.sleep(2)
        for run_id, job in list(runs.items()):
            status = client.get_run_status(run_id).value
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                print(f"bootstrap: {job} {status} ({time.monotonic() - started:.0f} s)", flush=True)
                del runs[run_id]


def _published_networks(settings, wanted: list[str], timeout_s: float) -> list[str]:
    """The registry's networks whose topology is published, waiting for the registry sensor's runs."""
    from grid_platform.publish import current

    deadline = time.monotonic() + timeout_s
    while True:
        ready = [n for n in wanted if current(settings.published_dir, "topology", n) is not None]
        if len(ready) == len(wanted) or time.monotonic() > deadline:
            return ready
        time.sleep(5)


def _backfill_reference_year(client, settings, today: date, timeout_s: float, started: float) -> None:
    """One asset backfill, as an operator would launch it from the UI: reference weather and the
    risk tables over the past year for every published network (one run per network)."""
    from grid_platform.networks import load_registry
    from grid_platform.sensors.risk import RISK_TABLE_KEYS, WEATHER_REFERENCE

    wanted = sorted(n for n, spec in load_registry(settings).items()
                    if spec.params.get("bootstrap_reference_year", True))
    ready = _published_networks(settings, wanted, timeout_s)
    for missing in sorted(set(wanted) - set(ready)):
        print(f"bootstrap: no topology for {missing} within {timeout_s:.0f} s; its reference year is left to the UI",
              flush=True)
    if not ready:
        return
    params = {
        "assetSelection": [{"path": key.path} for key in [WEATHER_REFERENCE, *RISK_TABLE_KEYS]],
        "partitionNames": reference_year_partitions(today, ready),
        "title": f"Reference year {today - timedelta(days=REFERENCE_YEAR_DAYS)} .. {today - timedelta(days=1)}",
        "tags": [{"key": "dagster/priority", "value": "5"}],
    }
    result = client._execute(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        print(f"bootstrap: reference-year backfill refused: {result}", flush=True)
        return
    backfill_id = result["backfillId"]
    print(f"bootstrap: reference-year backfill {backfill_id} for {', '.join(ready)}", flush=True)
    status = "REQUESTED"
    while status in ("REQUESTED", "CANCELING", "FAILING"):
        time.sleep(10)
        status = client._execute(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"].get("status")
    print(f"bootstrap: reference-year backfill {status} ({time.monotonic() - started:.0f} s)", flush=True)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from dagster_graphql import DagsterGraphQLClient

    _wait_for(f"http://{args.host}:{args.port}/server_info", args.timeout)
    client = DagsterGraphQLClient(args.host, port_number=args.port)
    settings = load_settings()
    now_local = datetime.now(ZoneInfo(settings.local_timezone))
    started = time.monotonic()
    # Each phase reads what the previous one loaded.
    for phase in bootstrap_phases(now_local.date(), now_local):
        _run_phase(client, phase, started)
    print(f"\n  Dagster UI   http://{args.host}:{args.port}\n  CKW stand-in http://127.0.0.1:{STANDIN_PORTS['ckw']}/api\n",
          flush=True)
    _backfill_reference_year(client, settings, now_local.date(), args.timeout * 3, started)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grid-platform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("standins", help="serve the local stand-ins of the upstream services")
    p.add_argument("--only", nargs="*", help="names of the stand-ins to serve (default: all)")
    p.set_defaults(fn=cmd_standins)

    p = sub.add_parser("api", help="serve the read API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8015)
    p.set_defaults(fn=cmd_api)

    p = sub.add_parser("token", help="mint a local (HS256) token")
    p.add_argument("sub")
    p.add_argument("--org", action="append", default=[], help="DSO organisation alias (network id), repeatable")
    p.add_argument("--scope", action="append", default=[], help="scope, repeatable (service accounts)")
    p.add_argument("--email")
    p.add_argument("--expires-in", type=int, default=3600)
    p.set_defaults(fn=cmd_token)

    p = sub.add_parser("bootstrap", help="submit the first materialisation to a running Dagster")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--timeout", type=float, default=300)
    p.set_defaults(fn=cmd_bootstrap)

    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
