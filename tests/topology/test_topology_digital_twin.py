"""A network from the Digital-Twin values API, over real HTTP against the DT stand-in (whose data
come from pandapower's lv_schutterwald): the same model, segments, tiles and shapes as the
package loader, stable ids, clear errors for malformed payloads and an unreachable DT, and the
registry / asset path (added as data, published, previous publication kept on failure)."""

from __future__ import annotations

import copy
import socket

import dagster as dg
import pytest

from grid_platform.assets.topology import grid_topology, networks
from grid_platform.http_retry import ServiceRetry
from grid_platform.networks import load_registry
from grid_platform.publish import current
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.settings import load_settings
from grid_platform.standins.digital_twin import DtNetwork, create_app, schutterwald
from grid_platform.standins.faults import FaultConfig
from grid_platform.standins.server import running
from grid_platform.topology import (
    DigitalTwinError,
    DigitalTwinPayloadError,
    DigitalTwinUnavailable,
    DtDanglingReference,
    DtDuplicateId,
    DtMissingCoordinates,
    build_topology,
    digital_twin_network,
    run_checks,
)

FAST = ServiceRetry(attempts=4, backoff_s=0.0, timeout_s=30.0)


@pytest.fixture(scope="module")
def demo() -> DtNetwork:
    return schutterwald()


@pytest.fixture(scope="module")
def dt_url(demo):
    with running(create_app({"schutterwald": lambda: demo})) as url:
        yield url


@pytest.fixture(scope="module")
def dt_net(dt_url):
    return digital_twin_network(dt_url, "schutterwald", "schutterwald_lv", retry=FAST)


@pytest.fixture(scope="module")
def dt_build(dt_net):
    return build_topology(dt_net)


def _line_shapes(build):
    shapes = build.shapes
    return shapes[shapes["asset_type"] == "ac_line_segment"].set_index("segment_id")


def _lines(build) -> set[str]:
    return set(_line_shapes(build).index)


def test_dt_network_is_the_same_model_as_the_package_loader(dt_net, lv_net):
    assert dt_net.source.startswith("digital_twin:http://127.0.0.1:") and dt_net.area_source == "declared"
    assert len(dt_net.lines) == len(lv_net.lines) == 3000 and len(dt_net.nodes) == len(lv_net.nodes)
    assert (dt_net.lines["geometry_source"] == "route").all()
    assert set(dt_net.lines["conductor_type"]) == {"underground_cable"}
    assert len(dt_net.substations) == len(dt_net.transformers) == 14
    # The open line-end switches of the package network reach the same line ends.
    assert (~dt_net.lines["from_closed"]).sum() == (~lv_net.lines["from_closed"]).sum()
    assert (~dt_net.lines["to_closed"]).sum() == (~lv_net.lines["to_closed"]).sum()


def test_segments_tiles_and_shapes_match_the_package_loader(dt_build, lv_build, dt_net):
    """The platform does not care where a network came from: same line segments, same tiles."""
    assert _lines(dt_build) == _lines(lv_build) and len(_lines(dt_build)) > 2900
    assert set(dt_build.tile_index["tile_id"]) == set(lv_build.tile_index["tile_id"])
    a = _line_shapes(dt_build)
    b = _line_shapes(lv_build).loc[a.index]
    assert (a["feeder_id"].fillna("") == b["feeder_id"].fillna("")).all()
    assert (a["length_m"] - b["length_m"]).abs().max() < 1e-6
    checks = {c.name: c.passed for c in run_checks(dt_net, dt_build)}
    assert checks["lines_join_two_existing_nodes"] and checks["geometries_valid_nonzero"]
    assert checks["inside_declared_area"]


def test_rebuild_gives_identical_ids_whatever_the_paging(dt_url, dt_build):
    again = build_topology(digital_twin_network(dt_url, "schutterwald", "schutterwald_lv", retry=FAST,
                                                page_size=700))
    assert list(again.shapes["segment_id"]) == list(dt_build.shapes["segment_id"])
    assert list(again.fragments["fragment_id"]) == list(dt_build.fragments["fragment_id"])


def test_transient_faults_are_retried(demo, dt_net):
    faults = FaultConfig(error_rate=0.2, truncated_rate=0.1, malformed_rate=0.1, burst_429=1, seed=7)
    with running(create_app({"schutterwald": lambda: demo}, faults=faults)) as url:
        net = digital_twin_network(url, "schutterwald", "schutterwald_lv",
                                   retry=ServiceRetry(attempts=8, backoff_s=0.0), page_size=1000)
    assert list(net.lines["line_id"]) == list(dt_net.lines["line_id"])
    assert net.lines.geometry.geom_equals_exact(dt_net.lines.geometry, 0).all()


def _broken(demo: DtNetwork, table: str, index: int, change):
    """A loader of the demo network with one item of ``table`` changed."""
    tables = copy.deepcopy(dict(demo.tables))
    change(tables[table], index)
    broken = DtNetwork(demo.title, demo.area_bbox, tables)
    return lambda: broken


def _set(key, value):
    def change(items, i):
        items[i][key] = value
    return change


def _duplicate(items, i):
    items.append(copy.deepcopy(items[i]))


BROKEN = {
    "dangling_line_bus": ("lines", 17, _set("to_bus", "B999999"), DtDanglingReference,
                          r"topology.lines: line 'L\d+': to_bus refers to bus 'B999999', which topology.buses"),
    "dangling_substation": ("transformers", 3, _set("substation_id", "S404"), DtDanglingReference,
                            r"transformer 'T\d+': substation_id refers to substation 'S404'"),
    "switch_off_its_line": ("switches", 0, _set("bus_id", "B1"), DtDanglingReference,
                            r"switch 'SW\d+' sits on bus 'B1', which is not an end of line"),
    "bus_without_coordinates": ("buses", 42, _set("geometry", None), DtMissingCoordinates,
                                r"topology.buses: bus 'B\d+' has no coordinates"),
    "bus_outside_wgs84": ("buses", 5, _set("geometry", {"type": "Point", "coordinates": [420000.0, 5360000.0]}),
                          DtMissingCoordinates, r"bus 'B\d+': invalid position \[420000.0, 5360000.0\]"),
    "line_route_one_point": ("lines", 3, _set("geometry", {"type": "LineString", "coordinates": [[7.88, 48.45]]}),
                             DtMissingCoordinates, r"line 'L\d+': LineString without enough coordinates"),
    "duplicate_line_id": ("lines", 250, _duplicate, DtDuplicateId,
                          r"topology.lines: duplicate line_id 'L\d+' \(items #\d+ and #3000\)"),
    "voltage_as_text": ("buses", 7, _set("voltage_kv", "0.4 kV"), DigitalTwinPayloadError,
                        r"bus 'B\d+': voltage_kv must be a finite number, got '0.4 kV'"),
    "unknown_conductor": ("lines", 9, _set("kind", "superconductor"), DigitalTwinPayloadError,
                          r"line 'L\d+': kind must be one of"),
}


@pytest.fixture(scope="module")
def broken_url(demo):
    nets = {name: _broken(demo, table, i, change) for name, (table, i, change, *_) in BROKEN.items()}
    with running(create_app(nets)) as url:
        yield url


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_malformed_payload_names_the_object(broken_url, case):
    *_, error, message = BROKEN[case]
    with pytest.raises(error, match=message):
        digital_twin_network(broken_url, case, "broken", retry=FAST)


def test_unreachable_or_unknown_gives_a_clear_error(dt_url):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(DigitalTwinUnavailable, match=rf"Digital Twin {dead}/values/topology.networks unreachable "
                                                     r"or failing: gave up after 2 attempts; last error: Connect"):
        digital_twin_network(dead, "schutterwald", retry=ServiceRetry(attempts=2, backoff_s=0.0))
    with pytest.raises(DigitalTwinError, match=r"has no network 'atlantis' \(it holds \['schutterwald'\]\)"):
        digital_twin_network(dt_url, "atlantis", retry=FAST)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("GRID_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data" / "networks").mkdir(parents=True)
    warehouse = WarehouseResource(path=str(tmp_path / "w.duckdb"), pipelines_dir=str(tmp_path / "dlt"))
    return load_settings(), dg.DagsterInstance.ephemeral(), warehouse


@pytest.mark.slow
def test_dt_network_is_data_built_published_and_kept_when_the_dt_goes_away(env, demo):
    settings, instance, warehouse = env
    with running(create_app({"schutterwald": lambda: demo})) as url:
        (settings.data_dir / "networks" / "dt.yaml").write_text(
            f"networks:\n  - network_id: dt_test_lv\n    source: digital_twin\n    network: schutterwald\n"
            f"    url: {url}\n")
        spec = load_registry(settings)["dt_test_lv"]
        assert spec.source == "digital_twin" and spec.available(settings)
        instance.add_dynamic_partitions(networks.name, ["dt_test_lv"])
        first = dg.materialize([grid_topology], partition_key="dt_test_lv", instance=instance,
                               resources={"warehouse": warehouse})
        assert first.success
        assert all(e.passed for e in first.get_asset_check_evaluations())
    published = current(settings.published_dir, "topology", "dt_test_lv")
    assert (published.path / "shapes.geojson").exists()

    # The DT is gone: the network waits in the registry sensor, a rebuild fails clearly and the
    # previous publication stays served.
    assert not spec.available(settings)
    again = dg.materialize([grid_topology], partition_key="dt_test_lv", instance=instance,
                           resources={"warehouse": warehouse}, raise_on_error=False)
    assert not again.success
    failure = next(e for e in again.all_events if e.event_type_value == "STEP_FAILURE")
    cause = failure.step_failure_data.error.cause
    assert cause.cls_name == "DigitalTwinUnavailable"
    assert f"Digital Twin {url}/values/topology.networks unreachable or failing" in cause.message
    assert current(settings.published_dir, "topology", "dt_test_lv").version == published.version
