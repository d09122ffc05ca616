"""The demo networks by network id (the ids partition the topology assets and publications).

pandapower and SimBench networks ship with their packages. The CGMES ones need the ENTSO-E
test configurations fetched by ``scripts/fetch_cgmes.py`` into
``$GRID_DATA_DIR/downloads/cgmes`` (CC BY-NC-SA: downloaded, never committed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..settings import load_settings
from .cim import read_cgmes
from .model import Network, TopologyError
from .pandapower_source import lv_schutterwald_network, mv_oberrhein_network, simbench_network

SMALLGRID_FILES = (
    "CGMES_v2.4.15_SmallGridTestConfiguration_BaseCase_Complete_v3.0.0.zip",
    "CGMES_v2.4.15_SmallGridTestConfiguration_Boundary_v3.0.0.zip",
)
SIMBENCH_CGMES_FILES = ("SimBench_1-HVMV-mixed-1.105-0-sw_modified.zip",)
# Great Britain including the cross-channel boundary point of SmallGrid.
SMALLGRID_AREA = (-8.7, 49.8, 2.5, 60.9)
GERMANY_AREA = (5.8, 47.1, 15.2, 55.1)


def cgmes_dir() -> Path:
    return load_settings().downloads_dir / "cgmes"


def _cgmes(files: tuple[str, ...], network_id: str, area) -> Callable[[], Network]:
    def load() -> Network:
        paths = [cgmes_dir() / f for f in files]
        missing = [p.name for p in paths if not p.exists()]
        if missing:
            raise TopologyError(f"{network_id}: {missing} not in {cgmes_dir()}; run scripts/fetch_cgmes.py")
        return read_cgmes(paths, network_id, area_bbox=area)

    return load


DEMO_NETWORKS: dict[str, Callable[[], Network]] = {
    "oberrhein_mv": mv_oberrhein_network,
    "schutterwald_lv": lv_schutterwald_network,
    "simbench_1_mv_rural_0_sw": simbench_network,
    "cgmes_smallgrid": _cgmes(SMALLGRID_FILES, "cgmes_smallgrid", SMALLGRID_AREA),
    "cgmes_simbench_hvmv": _cgmes(SIMBENCH_CGMES_FILES, "cgmes_simbench_hvmv", GERMANY_AREA),
}


def load_demo_network(network_id: str) -> Network:
    try:
        return DEMO_NETWORKS[network_id]()
    except KeyError:
        raise TopologyError(f"unknown demo network {network_id!r}; known: {sorted(DEMO_NETWORKS)}") from None
