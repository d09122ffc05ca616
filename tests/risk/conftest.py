"""Shared fixtures of the risk tests: the configuration and the real DWD TRY files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from grid_platform.risk.config import RiskConfig, load_config
from grid_platform.settings import PROJECT_ROOT, load_settings
from grid_platform.weather.dwd_try import TRY_DIR_NAME, try_files


@pytest.fixture(scope="session")
def cfg() -> RiskConfig:
    return load_config()


@pytest.fixture(scope="session")
def try_dir() -> Path:
    """The real TRY files from the demandlib 0.2.2 wheel.

    Looked up in this run's data dir and the project's default one; when absent, the set-up
    script ``scripts/fetch_demandlib.py`` (pip download from PyPI) is run once into the
    project's default data dir. Skips only when that download is impossible.
    """
    candidates = [load_settings().downloads_dir / TRY_DIR_NAME, PROJECT_ROOT / "data" / "downloads" / TRY_DIR_NAME]
    for candidate in candidates:
        if len(try_files(candidate)) == 15:
            return candidate
    env = {**os.environ, "GRID_DATA_DIR": str(PROJECT_ROOT / "data")}
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "fetch_demandlib.py")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    if done.returncode != 0 or len(try_files(candidates[1])) != 15:
        pytest.skip(f"DWD TRY files unavailable and the download failed: {done.stderr.strip()[-300:]}")
    return candidates[1]
