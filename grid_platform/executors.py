"""Executor of the platform's runs, chosen by environment variables.

``GRID_EXECUTOR`` unset or ``in_process``: every step in the run's own process (the embedded
default of ``make run``). ``celery``: steps go to celery workers (dagster-celery) over
``CELERY_BROKER_URL`` (RabbitMQ by default; ``redis://127.0.0.1:6379/0`` works too) on queue
``CELERY_QUEUE``, so the heavy risk partitions of one run execute on several workers at once.
Workers start with ``worker_command`` and the same environment (docs/operations.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster_celery import celery_executor

DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
DEFAULT_QUEUE = "grid"
# The code location a worker loads at start, before it reports ready: its first step does not
# pay the import of the platform (seconds), exactly like every later one.
CODE_LOCATION = "grid_platform.definitions"


def celery_settings() -> dict:
    """The dagster-celery executor config from the environment (the workers must get the same)."""
    return {
        "broker": os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER,
        "backend": os.environ.get("CELERY_RESULT_BACKEND") or "rpc://",
        "config_source": {
            "task_default_queue": os.environ.get("CELERY_QUEUE") or DEFAULT_QUEUE,
            # A step is acknowledged when it finishes, not when a worker takes it: a worker killed
            # mid-step leaves the message to the broker, which hands it to another worker.
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            # One step reserved per worker process: a lost worker takes no queued step with it.
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
        },
    }


def grid_executor() -> dg.ExecutorDefinition:
    kind = (os.environ.get("GRID_EXECUTOR") or "in_process").strip().lower()
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "celery":
        return celery_executor.configured(celery_settings(), name="grid_celery_executor")
    raise ValueError(f"GRID_EXECUTOR must be 'in_process' or 'celery', not {kind!r}")


def write_worker_config(directory: Path, preload: Sequence[str] = (CODE_LOCATION,)) -> Path:
    """Write the ``dagster_celery_config`` module the celery app of dagster-celery imports at worker
    start (put ``directory`` on PYTHONPATH): broker, backend and settings of ``celery_settings``,
    and the modules the worker imports before it is ready (``preload``: the code location)."""
    settings = celery_settings()
    lines = [f"broker_url = {settings['broker']!r}", f"result_backend = {settings['backend']!r}"]
    lines += [f"{key} = {value!r}" for key, value in settings["config_source"].items()]
    lines.append(f"imports = {tuple(preload)!r}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "dagster_celery_config.py"
    path.write_text("\n".join(lines) + "\n")
    return path


def worker_command(name: str, concurrency: int = 1) -> list[str]:
    """A celery worker of the platform's queue: ``concurrency`` step processes, named ``name@host``."""
    queue = celery_settings()["config_source"]["task_default_queue"]
    return [str(Path(sys.executable).with_name("celery")), "-A", "dagster_celery.app", "worker", "-Q", queue,
            "-n", f"{name}@%h", "--concurrency", str(concurrency), "--pool", "prefork" if concurrency > 1 else "solo",
            "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]


@contextmanager
def celery_workers(count: int, log_dir: Path, preload: Sequence[str] = (CODE_LOCATION,),
                   ready_timeout_s: float = 90.0) -> Iterator[list[subprocess.Popen]]:
    """Start ``count`` celery workers (one step process each, named w1, w2, …) with this process's
    environment, each loading ``preload`` (the code location of the runs it serves), wait until
    each is consuming, and stop them on exit (SIGTERM, then SIGKILL)."""
    config_dir = log_dir / "celery_config"
    write_worker_config(config_dir, preload)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(config_dir), os.environ.get("PYTHONPATH")]))}
    workers, logs = [], []
    try:
        for i in range(1, count + 1):
            log = log_dir / f"worker_{i}.log"
            logs.append(log)
            with log.open("wb") as out:
                workers.append(subprocess.Popen(worker_command(f"w{i}"), env=env, stdout=out,
                                                stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + ready_timeout_s
        while not all(" ready." in log.read_text(errors="replace") for log in logs):
            dead = [w.args for w in workers if w.poll() is not None]
            if dead or time.monotonic() > deadline:
                tails = "\n".join(log.read_text(errors="replace")[-1500:] for log in logs)
                raise RuntimeError(f"celery workers did not start ({'exited' if dead else 'timeout'}):\n{tails}")
            time.sleep(0.3)
        yield workers
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
