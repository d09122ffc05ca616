"""CGMES reader on the ENTSO-E test configurations, and malformed inputs made by editing them."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grid_platform.topology import (
    CimDanglingReference,
    CimDuplicateMrid,
    CimMissingCoordinates,
    CimNamespaceError,
    CimSyntaxError,
    build_topology,
    read_cgmes,
    run_checks,
)

from .conftest import SIMBENCH_CGMES, SMALLGRID, SMALLGRID_BOUNDARY

GB_AREA = (-8.7, 49.8, 2.5, 60.9)  # Great Britain incl. the cross-channel boundary point
CIM16 = b"http://iec.ch/TC57/2013/CIM-schema-cim16#"


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if n.lower().endswith(".xml")}


def write(tmp: Path, files: dict[str, bytes]) -> list[Path]:
    out = []
    for name, data in files.items():
        p = tmp / Path(name).name
        p.write_bytes(data)
        out.append(p)
    return out


def pick(files: dict[str, bytes], marker: str) -> str:
    return next(n for n in files if marker in n)


@pytest.fixture(scope="module")
def small(cgmes_dir):
    return members(cgmes_dir / SMALLGRID), members(cgmes_dir / SMALLGRID_BOUNDARY)


@pytest.fixture(scope="module")
def simbench_files(cgmes_dir):
    return members(cgmes_dir / SIMBENCH_CGMES)


def test_smallgrid_gl_geometry(cgmes_dir):
    net = read_cgmes([cgmes_dir / SMALLGRID, cgmes_dir / SMALLGRID_BOUNDARY], "smallgrid", area_bbox=GB_AREA)
    assert len(net.lines) == 176 and len(net.nodes) == 118 and len(net.substations) == 105
    assert (net.lines["geometry_source"] == "gl").all()
    assert net.source == "cgmes:cim16"
    build = build_topology(net)
    assert build.quality["segments"] >= 176 and build.quality["fragments_without_segment_id"] == 0
    assert build.quality["substations"] == 10  # the substations holding the 10 transformers
    assert all(r.passed for r in run_checks(net, build)[:3])  # joins, geometry, area
    # Great Britain in EPSG:4326.
    assert -7 < build.filters["extent_min_lng"] < build.filters["extent_max_lng"] < 2.2


def test_zip_and_xml_files_read_the_same(tmp_path, cgmes_dir, small):
    eq, bd = small
    a = read_cgmes([cgmes_dir / SMALLGRID, cgmes_dir / SMALLGRID_BOUNDARY], "a")
    b = read_cgmes(write(tmp_path, {**eq, **bd}), "a")
    assert a.lines.drop(columns="geometry").equals(b.lines.drop(columns="geometry"))
    assert a.lines.geometry.geom_equals_exact(b.lines.geometry, tolerance=0).all()


def test_simbench_cgmes_node_breaker(cgmes_dir):
    net = read_cgmes(cgmes_dir / SIMBENCH_CGMES, "simbench_hvmv")
    assert len(net.lines) == 194 and (net.lines["geometry_source"] == "gl").all()
    assert len(net.switches) == 625 and len(net.nodes) == 605
    build = build_topology(net)
    lines = build.fragments
    assert (lines["feeder_source"] == "bfs").mean() > 0.9
    assert lines["parent_substation_name"].notna().mean() > 0.9
    assert set(lines["conductor_type_source"]) == {"bch_per_km"}


def test_missing_boundary_is_a_dangling_reference(cgmes_dir):
    with pytest.raises(
        CimDanglingReference,
        match=r"Terminal \w.* references missing object .* via "
        r"Terminal\.TopologicalNode",
    ) as e:
        read_cgmes(cgmes_dir / SMALLGRID, "no_boundary")
    assert e.value.object_id


def test_terminal_to_missing_connectivity_node(tmp_path, simbench_files):
    files = dict(simbench_files)
    eq = pick(files, "_eq.xml")
    text = files[eq].decode()
    m = re.search(r'\s*<cim:ConnectivityNode rdf:ID="_([^"]+)">.*?</cim:ConnectivityNode>', text, re.DOTALL)
    files[eq] = (text[: m.start()] + text[m.end() :]).encode()
    with pytest.raises(
        CimDanglingReference,
        match=rf"Terminal .* references missing object '{m.group(1)}' via "
        r"Terminal\.ConnectivityNode",
    ):
        read_cgmes(write(tmp_path, files), "x")


def test_location_of_missing_resource(tmp_path, small):
    eq, bd = small
    files = {**eq, **bd}
    gl = pick(files, "_GL_")
    text = files[gl].decode("utf-8-sig")
    m = re.search(
        r'<cim:Location rdf:ID="_([^"]+)">(?:(?!</cim:Location>).)*?'
        r'<cim:Location.PowerSystemResources rdf:resource="#_([^"]+)"',
        text,
        re.DOTALL,
    )
    files[gl] = text.replace(f'rdf:resource="#_{m.group(2)}"', 'rdf:resource="#_no-such-equipment"').encode()
    with pytest.raises(
        CimDanglingReference,
        match=rf"Location {m.group(1)}.*'no-such-equipment'.*"
        r"Location\.PowerSystemResources",
    ):
        read_cgmes(write(tmp_path, files), "x")


def test_line_without_any_coordinates(tmp_path, small):
    eq, bd = small
    files = {n: d for n, d in {**eq, **bd}.items() if "_GL_" not in n and "_DL_" not in n}
    with pytest.raises(CimMissingCoordinates, match=r"ACLineSegment \S+ \('[^']+'\) has no GL location") as e:
        read_cgmes(write(tmp_path, files), "x")
    assert e.value.object_id


def test_diagram_layout_is_the_schematic_fallback(tmp_path, small):
    eq, bd = small
    files = {n: d for n, d in {**eq, **bd}.items() if "_GL_" not in n}
    net = read_cgmes(write(tmp_path, files), "schematic", area_bbox=GB_AREA)
    assert (net.lines["geometry_source"] == "schematic").all()
    build = build_topology(net)
    assert build.quality["lines_schematic_excluded"] == 176 and build.quality["segments"] == 0


def test_duplicate_mrid(tmp_path, simbench_files):
    files = dict(simbench_files)
    eq = pick(files, "_eq.xml")
    text = files[eq].decode()
    m = re.search(r'\s*<cim:Substation rdf:ID="_([^"]+)">.*?</cim:Substation>', text, re.DOTALL)
    files[eq] = (text[: m.end()] + m.group(0) + text[m.end() :]).encode()
    with pytest.raises(CimDuplicateMrid, match=rf"duplicate mRID '{m.group(1)}': Substation"):
        read_cgmes(write(tmp_path, files), "x")


@pytest.mark.parametrize(
    "namespace, message",
    [
        (b"http://iec.ch/TC57/2013/CIM-schema-cim99#", "unknown CIM namespace"),
        (b"http://example.org/not-cim#", "which is not CIM"),
    ],
)
def test_wrong_namespace(tmp_path, simbench_files, namespace, message):
    files = dict(simbench_files)
    eq = pick(files, "_eq.xml")
    files[eq] = files[eq].replace(CIM16, namespace)
    with pytest.raises(CimNamespaceError, match=message):
        read_cgmes(write(tmp_path, files), "x")


def test_mixed_cim_versions(tmp_path, simbench_files):
    files = dict(simbench_files)
    gl = pick(files, "_gl.xml")
    files[gl] = files[gl].replace(CIM16, b"http://iec.ch/TC57/CIM100#")
    with pytest.raises(CimNamespaceError, match="several CIM versions"):
        read_cgmes(write(tmp_path, files), "x")


def test_truncated_xml(tmp_path, simbench_files):
    files = dict(simbench_files)
    eq = pick(files, "_eq.xml")
    files[eq] = files[eq][: len(files[eq]) // 2]
    with pytest.raises(CimSyntaxError, match=r"_eq\.xml: truncated or malformed XML"):
        read_cgmes(write(tmp_path, files), "x")


@pytest.mark.slow
def test_realgrid_is_streamed_and_refused_without_coordinates(cgmes_dir):
    """RealGrid (86 MB of XML, 149 k objects) has neither GL nor DL: the first line is named.
    Parsed in a child process to measure that memory stays bounded by the kept objects
    (~100 MB) rather than the document (the EQ DOM alone takes ~220 MB)."""
    code = (
        "import resource, sys\n"
        "from grid_platform.topology import read_cgmes, CimMissingCoordinates\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    read_cgmes(sys.argv[1], 'realgrid')\n"
        "except CimMissingCoordinates as e:\n"
        "    print(e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(cgmes_dir / "CGMES_v2.4.15_RealGridTestConfiguration_v2.zip")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    message, growth_mb = run.stdout.strip().splitlines()
    assert re.match(r"ACLineSegment \S+ \('[^']+'\) has no GL location", message)
    assert int(growth_mb) < 180
