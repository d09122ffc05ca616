"""Scale-out over the real RabbitMQ broker of the machine: the risk tables of a reference-weather
range run with the celery executor on two real worker processes (each test starts and stops its
own, on a queue of its own), their steps land on both workers, and killing a worker (SIGKILL)
in the middle of the run loses nothing: the broker hands the step to the other worker and the
stored partitions equal those of an undisturbed in-process run."""

import os
import re
import threading
import time
import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from grid_platform.assets.risk import heat_thresholds, risk_assets, risk_tables, vegetation, weather_reference
from grid_platform.assets.topology import grid_topology, networks
from grid_platform.executors import celery_workers, grid_executor
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.risk.partitions import stored_tables
from grid_platform.sensors.risk import risk_tables_job
from grid_platform.settings import load_settings
from grid_platform.weather.dwd_try import TRY_DIR_NAME, try_files

pytestmark = pytest.mark.slow

NETWORK = "oberrhein_mv"
FIRST, LAST = date(2025, 7, 12), date(2025, 7, 17)  # two steps of three dates
RANGE_TAGS = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def key(day: date) -> str:
    return dg.MultiPartitionKey({"date": day.isoformat(), "network": NETWORK})


TAGS = {RANGE_TAGS[0]: key(FIRST), RANGE_TAGS[1]: key(LAST)}


def _defs() -> dg.Definitions:
    return dg.Definitions(assets=[grid_topology, *risk_assets], jobs=[risk_tables_job], executor=grid_executor(),
                          resources={"warehouse": WarehouseResource(path=dg.EnvVar("GRID_WAREHOUSE"),
                                                                    pipelines_dir=dg.EnvVar("GRID_PROD_DLT_DIR"))})


def risk_tables_on_workers() -> dg.JobDefinition:
    """The risk tables job as the workers rebuild it (module scope: reconstructable); the executor
    comes from GRID_EXECUTOR=celery, set before the first (cached) reconstruction."""
    return _defs().resolve_job_def(risk_tables_job.name)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """oberrhein_mv topology, vegetation, thresholds and a week of reference weather (in-process)."""
    root = tmp_path_factory.mktemp("prod_celery")
    try_dir = load_settings().downloads_dir / TRY_DIR_NAME  # the session data dir links the project downloads
    if len(try_files(try_dir)) != 15:
        pytest.skip("DWD TRY files missing: run `make data`")
    patch = pytest.MonkeyPatch()
    patch.setenv("GRID_TRY_DIR", str(try_dir))
    patch.setenv("GRID_DATA_DIR", str(root / "data"))
    patch.setenv("GRID_WAREHOUSE", str(root / "warehouse.duckdb"))
    patch.setenv("GRID_PROD_DLT_DIR", str(root / "dlt"))
    patch.setenv("CELERY_QUEUE", f"grid_test_{uuid.uuid4().hex[:10]}")
    # The workers import this module to rebuild the job.
    patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    (root / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        instance.add_dynamic_partitions(networks.name, [NETWORK])
        resources = {"warehouse": WarehouseResource(path=str(root / "warehouse.duckdb"), pipelines_dir=str(root))}
        assert dg.materialize([grid_topology], partition_key=NETWORK, instance=instance, resources=resources).success
        assert dg.materialize([vegetation], partition_key=NETWORK, instance=instance, resources=resources).success
        assert dg.materialize([heat_thresholds], instance=instance, resources=resources).success
        assert dg.materialize([weather_reference], instance=instance, resources=resources, tags=TAGS).success
        yield root, instance, patch
    patch.undo()


def _run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    with dg.execute_job(dg.reconstructable(risk_tables_on_workers), instance=instance, tags=TAGS) as result:
        return result.dagster_run


@pytest.fixture(scope="module")
def undisturbed(platform):
    """The reference: the same job in-process, its partitions in their own store."""
    root, instance, patch = platform
    patch.setenv("GRID_RISK_PARTS_URL", str(root / "parts_in_process"))
    warehouse = WarehouseResource(path=os.environ["GRID_WAREHOUSE"], pipelines_dir=str(root))
    assert dg.materialize([risk_tables], instance=instance, resources={"warehouse": warehouse}, tags=TAGS).success
    return stored_tables(str(root / "parts_in_process"))


def _worker_of_steps(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(step key, celery worker) of every step execution the workers reported."""
    out = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        worker = event.engine_event_data.metadata.get("Celery worker") if event.engine_event_data else None
        if worker is not None:
            out.append((event.step_key, worker.value))
    return out


def _assert_equal_stores(ours: dict[str, pd.DataFrame], reference: dict[str, pd.DataFrame]) -> None:
    assert ours.keys() == reference.keys()
    for table, frame in reference.items():
        pd.testing.assert_frame_equal(ours[table], frame, check_dtype=False, obj=table)


def test_steps_run_on_two_workers(platform, undisturbed, tmp_path):
    root, instance, patch = platform
    patch.setenv("GRID_RISK_PARTS_URL", str(root / "parts_celery"))
    patch.setenv("GRID_EXECUTOR", "celery")
    with celery_workers(2, tmp_path) as workers:
        run = _run(instance)
        pids = {w.pid for w in workers}
    assert run.status == dg.DagsterRunStatus.SUCCESS
    steps = _worker_of_steps(instance, run.run_id)
    heavy = {w for s, w in steps if "risk_partition_runs" in s}
    assert len(heavy) == 2 and {w.split("@")[0] for w in heavy} == {"w1", "w2"}, steps
    # Every step, planning and publication included, ran in a worker process, not in the run's.
    assert {s for s, _ in steps} >= {"risk_tables.risk_plan", "risk_tables.risk_publish"}
    started = [r.dagster_event for r in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)]
    assert {e.pid for e in started} <= pids and os.getpid() not in {e.pid for e in started}
    _assert_equal_stores(stored_tables(str(root / "parts_celery")), undisturbed)


def test_a_killed_worker_loses_nothing(platform, undisturbed, tmp_path):
    root, instance, patch = platform
    patch.setenv("GRID_RISK_PARTS_URL", str(root / "parts_killed"))
    patch.setenv("GRID_EXECUTOR", "celery")
    outcome: dict = {}
    with celery_workers(2, tmp_path) as workers:
        thread = threading.Thread(target=lambda: outcome.setdefault("run", _run(instance)))
        thread.start()
        # Kill whichever worker first starts a heavy step, one second into it.
        deadline, victim = time.monotonic() + 240, None
        while victim is None and time.monotonic() < deadline and thread.is_alive():
            for i, worker in enumerate(workers, start=1):
                if re.search(r"risk_partition_runs\[[^]]+\] - STEP_START", (tmp_path / f"worker_{i}.log").read_text()):
                    victim = worker
                    break
            time.sleep(0.2)
        assert victim is not None, "no heavy step started"
        time.sleep(1.0)
        victim.kill()
        thread.join(timeout=300)
    run = outcome["run"]
    assert run.status == dg.DagsterRunStatus.SUCCESS
    steps = _worker_of_steps(instance, run.run_id)
    heavy = [s for s, _ in steps if "risk_partition_runs" in s]
    assert len(heavy) > len(set(heavy)), f"no step was redelivered: {steps}"  # the killed one ran twice
    _assert_equal_stores(stored_tables(str(root / "parts_killed")), undisturbed)
    assert Path(root / "parts_killed").exists()


def test_default_executor_is_in_process(monkeypatch):
    monkeypatch.delenv("GRID_EXECUTOR", raising=False)
    assert grid_executor() is dg.in_process_executor
    monkeypatch.setenv("GRID_EXECUTOR", "celery")
    assert grid_executor().name == "grid_celery_executor"
    monkeypatch.setenv("GRID_EXECUTOR", "threads")
    with pytest.raises(ValueError, match="GRID_EXECUTOR"):
        grid_executor()
