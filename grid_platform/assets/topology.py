"""Grid topology assets: one partition per network (a dynamic partition, so adding a network is
data). The build (fragments, segments, substations, tiles, filters) runs in one step; its
tables go to the warehouse schema ``topology`` and its read-optimised outputs are published
atomically for the read API. A failed build, e.g. malformed CIM, raises a clear error naming
the object and leaves the previous publication served.
"""

import base64

import dagster as dg
import pandas as pd
import shapely

from grid_platform.networks import load_network, load_registry
from grid_platform.resources.warehouse import WarehouseResource
from grid_platform.settings import load_settings
from grid_platform.topology import build_topology, publish_topology, render_preview, run_checks

OWNERS = ["team:grid-data"]
GROUP = "topology"
networks = dg.DynamicPartitionsDefinition(name="networks")


def _spec(name: str, description: str, kinds: set[str]) -> dg.AssetSpec:
    return dg.AssetSpec(dg.AssetKey(["topology", name]), description=description, group_name=GROUP, owners=OWNERS,
                        kinds=kinds, partitions_def=networks)


TOPOLOGY_SPECS = [
    _spec("fragments", "Line fragments (source line pieces split at municipal borders) with stable ids, "
                       "segment ids, feeder/unit/municipality attributes and how each was derived.",
          {"python", "duckdb"}),
    _spec("segments", "Map segments ('tratte') grouped by (dso, line, conductor, municipality) per the md5 "
                      "identity rule, plus substation shapes: the shapes behind /shapes.", {"python", "duckdb"}),
    _spec("substations", "Substations with feeders, units and positions (substations map).", {"python", "duckdb"}),
    _spec("tiles", "5 km UTM tile index of the network's shapes, with bbox and segment counts.",
          {"python", "duckdb"}),
    _spec("filters", "Filter lists (substations, lines, units, municipalities) and the map extent.", {"python"}),
    _spec("shapes_publication", "GeoJSON shapes per network and per tile and the substations map, published "
                                "atomically (new version, then switch) with content hashes for ETags.",
          {"geojson", "parquet"}),
]
SEGMENTS = dg.AssetKey(["topology", "segments"])
# Named as the domain's check results (grid_platform.topology.checks).
TOPOLOGY_CHECKS = [
    dg.AssetCheckSpec("lines_join_two_existing_nodes", asset=SEGMENTS, blocking=True,
                      description="Every line joins two distinct existing nodes."),
    dg.AssetCheckSpec("geometries_valid_nonzero", asset=SEGMENTS, blocking=True,
                      description="No invalid or zero-length geometry."),
    dg.AssetCheckSpec("inside_declared_area", asset=SEGMENTS,
                      description="Every coordinate lies inside the network's declared area."),
]


def _wkb_frame(gdf) -> pd.DataFrame:
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    frame["geom"] = shapely.to_wkb(gdf.geometry.to_numpy())
    return frame


@dg.multi_asset(specs=TOPOLOGY_SPECS, check_specs=TOPOLOGY_CHECKS, pool="duckdb", can_subset=False)
def grid_topology(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Builds and publishes the topology of one network."""
    settings = load_settings()
    network_id = context.partition_key
    spec = load_registry(settings).get(network_id)
    if spec is None:
        raise dg.Failure(f"network {network_id!r} is not in the network registry any more")
    net = load_network(spec, settings)
    build = build_topology(net)
    checks = {c.name: c for c in run_checks(net, build)}

    where = {"network_id": network_id}
    fragments = _wkb_frame(build.fragments)
    shapes = _wkb_frame(build.shapes).assign(network_id=network_id)
    warehouse.replace_rows("topology", "fragments", fragments, where)
    warehouse.replace_rows("topology", "segments", shapes, where)
    warehouse.replace_rows("topology", "substations", build.substations.assign(network_id=network_id), where)
    warehouse.replace_rows("topology", "tiles", build.tile_index.assign(network_id=network_id), where)
    publication = publish_topology(build, settings.published_dir)

    preview = base64.b64encode(render_preview(build)).decode()
    q = build.quality
    lines = build.shapes[build.shapes["asset_type"] == "ac_line_segment"]
    yield dg.MaterializeResult(asset_key=["topology", "fragments"], metadata={
        "dagster/row_count": len(fragments),
        "source": spec.source, "title": spec.title,
        "attribute_provenance": dg.MetadataValue.json(build.provenance),
        "data_quality": dg.MetadataValue.json({k: v for k, v in q.items() if isinstance(v, (int, float, str))}),
    })
    yield dg.MaterializeResult(asset_key=["topology", "segments"], metadata={
        "dagster/row_count": len(shapes),
        "line_segments": len(lines),
        "line_km": round(float(lines["length_m"].sum()) / 1000, 2),
        "connected_components": dg.MetadataValue.json(checks["connected_components"].metadata),
        "map_preview": dg.MetadataValue.md(f"![{network_id}](data:image/png;base64,{preview})"),
    })
    yield dg.MaterializeResult(asset_key=["topology", "substations"],
                               metadata={"dagster/row_count": len(build.substations)})
    yield dg.MaterializeResult(asset_key=["topology", "tiles"], metadata={
        "dagster/row_count": len(build.tile_index),
        "tile_index": dg.MetadataValue.md(build.tile_index.drop(columns="tile_bbox_geojson").head(20)
                                          .to_markdown(index=False)),
    })
    yield dg.MaterializeResult(asset_key=["topology", "filters"], metadata={
        "lines": len(build.filters.get("lines", [])),
        "operational_units": len(build.filters.get("operational_units", [])),
        "extent": dg.MetadataValue.json({k: v for k, v in build.filters.items() if k.startswith("extent")}),
    })
    yield dg.MaterializeResult(asset_key=["topology", "shapes_publication"], metadata={
        "version": publication.version, "content_hash": publication.content_hash,
        "path": dg.MetadataValue.path(str(publication.path)), "files": len(publication.files),
    })
    for spec in TOPOLOGY_CHECKS:
        result = checks[spec.name]
        yield dg.AssetCheckResult(asset_key=SEGMENTS, check_name=spec.name, passed=result.passed,
                                  metadata={**result.metadata, "first_failures": result.failures[:10]})
