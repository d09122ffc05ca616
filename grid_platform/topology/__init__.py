"""Grid topology domain (issue 4): sources -> common network model -> fragments, segments,
substations, tiles, filters, GeoJSON and their atomic publication. No Dagster here.

Typical use::

    net = mv_oberrhein_network()                 # or lv_schutterwald_network(), simbench_network(code),
                                                 # read_cgmes([...zips...], "network_id"),
                                                 # digital_twin_network(dt_url, "dt_network_id")
    build = build_topology(net)                  # TopologyBuild
    results = run_checks(net, build)             # list[CheckResult]
    publish_topology(build)                      # published/topology/<network_id>/current
"""

from .build import (
    FRAGMENT_COLUMNS,
    SHAPE_PROPERTIES,
    SUBSTATION_TABLE_COLUMNS,
    TopologyBuild,
    aggregate_segments,
    build_fragments,
    build_topology,
    filter_options,
    md5_hex,
    segment_id,
    shapes_wgs84,
    substation_segment_id,
)
from .checks import (
    CheckResult,
    check_components,
    check_geometries,
    check_inside_area,
    check_lines_join_nodes,
    render_preview,
    run_checks,
)
from .cim import (
    CimDanglingReference,
    CimDuplicateMrid,
    CimError,
    CimMissingCoordinates,
    CimNamespaceError,
    CimStructureError,
    CimSyntaxError,
    read_cgmes,
)
from .digital_twin import (
    DigitalTwinError,
    DigitalTwinPayloadError,
    DigitalTwinUnavailable,
    DtDanglingReference,
    DtDuplicateId,
    DtMissingCoordinates,
    digital_twin_network,
    network_from_tables,
)
from .geojson import feature_collection
from .model import MissingGeometryError, Network, TopologyError
from .pandapower_source import (
    DEFAULT_SIMBENCH_CODE,
    from_pandapower,
    lv_schutterwald_network,
    mv_oberrhein_network,
    simbench_network,
)
from .publication import DATASET, publish_topology, write_topology
from .scale import copies_for, tiled_network
from .tiles import GRID_TILES_COLUMNS, TILE_ID_RE, TILE_INDEX_COLUMNS, assign_tiles, tile_grid, tile_tables

__all__ = [
    "DATASET",
    "DEFAULT_SIMBENCH_CODE",
    "FRAGMENT_COLUMNS",
    "GRID_TILES_COLUMNS",
    "SHAPE_PROPERTIES",
    "SUBSTATION_TABLE_COLUMNS",
    "TILE_ID_RE",
    "TILE_INDEX_COLUMNS",
    "CheckResult",
    "CimDanglingReference",
    "CimDuplicateMrid",
    "CimError",
    "CimMissingCoordinates",
    "CimNamespaceError",
    "CimStructureError",
    "CimSyntaxError",
    "DigitalTwinError",
    "DigitalTwinPayloadError",
    "DigitalTwinUnavailable",
    "DtDanglingReference",
    "DtDuplicateId",
    "DtMissingCoordinates",
    "MissingGeometryError",
    "Network",
    "TopologyBuild",
    "TopologyError",
    "aggregate_segments",
    "assign_tiles",
    "build_fragments",
    "build_topology",
    "check_components",
    "check_geometries",
    "check_inside_area",
    "check_lines_join_nodes",
    "copies_for",
    "digital_twin_network",
    "feature_collection",
    "filter_options",
    "from_pandapower",
    "lv_schutterwald_network",
    "md5_hex",
    "mv_oberrhein_network",
    "network_from_tables",
    "publish_topology",
    "read_cgmes",
    "render_preview",
    "run_checks",
    "segment_id",
    "shapes_wgs84",
    "simbench_network",
    "substation_segment_id",
    "tile_grid",
    "tile_tables",
    "tiled_network",
    "write_topology",
]
