"""Real networks shared by the topology tests (built once per session)."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

from grid_platform.settings import PROJECT_ROOT, load_settings
from grid_platform.topology import build_topology
from grid_platform.topology.pandapower_source import (
    lv_schutterwald_network,
    mv_oberrhein_network,
    simbench_network,
)

warnings.filterwarnings("ignore", message=".*numba.*")

SMALLGRID = "CGMES_v2.4.15_SmallGridTestConfiguration_BaseCase_Complete_v3.0.0.zip"
SMALLGRID_BOUNDARY = "CGMES_v2.4.15_SmallGridTestConfiguration_Boundary_v3.0.0.zip"
SIMBENCH_CGMES = "SimBench_1-HVMV-mixed-1.105-0-sw_modified.zip"


@pytest.fixture(scope="session")
def mv_net():
    return mv_oberrhein_network()


@pytest.fixture(scope="session")
def lv_net():
    return lv_schutterwald_network()


@pytest.fixture(scope="session")
def simbench_net():
    return simbench_network()


@pytest.fixture(scope="session")
def mv_build(mv_net):
    return build_topology(mv_net)


@pytest.fixture(scope="session")
def lv_build(lv_net):
    return build_topology(lv_net)


@pytest.fixture(scope="session")
def cgmes_dir() -> Path:
    """The ENTSO-E CGMES test files (CC BY-NC-SA: downloaded, never committed).

    Tests run with a throw-away GRID_DATA_DIR, so the files are kept where
    ``scripts/fetch_cgmes.py`` puts them by default (the project's ``data/``, git-ignored);
    the fixture fetches them there once if needed and skips only if that is impossible."""
    spec = importlib.util.spec_from_file_location("fetch_cgmes", PROJECT_ROOT / "scripts" / "fetch_cgmes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    session = mod.cgmes_dir(load_settings().data_dir)
    if mod.is_complete(session):
        return session
    try:
        return mod.fetch(mod.cgmes_dir(PROJECT_ROOT / "data"))
    except mod.FetchError as e:
        pytest.skip(f"CGMES test configurations not downloadable: {e}")
