"""Session-wide isolation: every test run gets its own data dir and Dagster home."""

import os
import tempfile
from pathlib import Path

import pytest

_session_dir = Path(tempfile.mkdtemp(prefix="grid-test-"))
# Reference data fetched at set-up (`make data`) lives in the project's data dir; tests share
# it read-only instead of downloading it again into their throw-away data dir.
PROJECT_DOWNLOADS = Path(os.environ.get("GRID_DATA_DIR") or Path(__file__).resolve().parents[1] / "data") / "downloads"
os.environ["GRID_DATA_DIR"] = str(_session_dir / "data")
(_session_dir / "data").mkdir(parents=True)
if PROJECT_DOWNLOADS.exists():
    (_session_dir / "data" / "downloads").symlink_to(PROJECT_DOWNLOADS, target_is_directory=True)
os.environ["DAGSTER_HOME"] = str(_session_dir / "dagster_home")
os.environ["GRID_WAREHOUSE"] = str(_session_dir / "data" / "warehouse.duckdb")
Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)

# The shared specs and reference data sit beside the checkout (CI lays a copy there too).
SHARED = Path(os.environ.get("GRID_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.exists(), f"shared folder not found at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def ckw_examples(shared_dir: Path) -> Path:
    return shared_dir / "data" / "ckw" / "e-ckw-public-data-1.0.23-raml" / "examples"


@pytest.fixture(scope="session")
def project_downloads() -> Path:
    """Where `make data` put the reference downloads (may not exist on a machine without them)."""
    return PROJECT_DOWNLOADS


@pytest.fixture(autouse=True)
def no_inherited_defs_state_storage():
    """Each test starts without a current Dagster defs-state storage. Entering a test instance
    (``dg.instance_for_test``) makes its storage current; one left behind by an earlier test points
    at a deleted temporary directory, and any later ``Definitions`` load (``dg.materialize``) reads
    it and fails with "unable to open database file"."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
