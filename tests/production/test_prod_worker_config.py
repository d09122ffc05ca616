"""The celery worker configuration written for deployments: acknowledgement late, one step
reserved, and the code location imported before the worker reports ready."""

import importlib.util
import runpy

from grid_platform.executors import CODE_LOCATION, write_worker_config


def test_worker_config_preloads_the_code_location(tmp_path, monkeypatch):
    monkeypatch.setenv("CELERY_QUEUE", "grid_cfg_test")
    config = runpy.run_path(str(write_worker_config(tmp_path)))
    assert config["imports"] == (CODE_LOCATION,) == ("grid_platform.definitions",)
    assert importlib.util.find_spec(CODE_LOCATION) is not None
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1 and config["task_default_queue"] == "grid_cfg_test"
    assert runpy.run_path(str(write_worker_config(tmp_path, preload=("bench_module",))))["imports"] == ("bench_module",)
