"""Real networks shared by the analytics tests (loaded once per session: pandapower is slow to import)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from grid_platform.analytics import (
    GridGraph,
    compute_centrality,
    graph_from_matpower,
    graph_from_pandapower,
    matpower_case_path,
)
from grid_platform.analytics.centrality import CentralityResult

SIMBENCH_CODE = "1-HVMV-mixed-all-0-sw"


def _quiet_import_pandapower() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pandapower import networks
    return networks


@pytest.fixture(scope="session")
def oberrhein_net() -> Any:
    return _quiet_import_pandapower().mv_oberrhein()


@pytest.fixture(scope="session")
def schutterwald_net() -> Any:
    return _quiet_import_pandapower().lv_schutterwald()


@pytest.fixture(scope="session")
def simbench_net() -> Any:
    _quiet_import_pandapower()
    import simbench

    return simbench.get_simbench_net(SIMBENCH_CODE)


@pytest.fixture(scope="session")
def oberrhein(oberrhein_net: Any) -> GridGraph:
    return graph_from_pandapower(oberrhein_net, source="mv_oberrhein")


@pytest.fixture(scope="session")
def schutterwald(schutterwald_net: Any) -> GridGraph:
    return graph_from_pandapower(schutterwald_net, source="lv_schutterwald")


@pytest.fixture(scope="session")
def simbench_graph(simbench_net: Any) -> GridGraph:
    return graph_from_pandapower(simbench_net, source=SIMBENCH_CODE)


@pytest.fixture(scope="session")
def activsg2000() -> GridGraph:
    return graph_from_matpower(matpower_case_path("case_ACTIVSg2000"), source="case_ACTIVSg2000")


@pytest.fixture(scope="session")
def oberrhein_centrality(oberrhein: GridGraph) -> CentralityResult:
    return compute_centrality(oberrhein)


@pytest.fixture(scope="session")
def simbench_centrality(simbench_graph: GridGraph) -> CentralityResult:
    return compute_centrality(simbench_graph)
