"""Networks as data: the registry sensor adds a partition per registered network and builds it."""

import dagster as dg

from grid_platform.assets.topology import networks
from grid_platform.networks import load_registry
from grid_platform.settings import load_settings

topology_job = dg.define_asset_job(
    "topology_job", selection=dg.AssetSelection.groups("topology"), partitions_def=networks,
    description="Build and publish the topology of one network.",
)


@dg.sensor(job=topology_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def grid_network_registry(context: dg.SensorEvaluationContext):
    """Adds every registered network whose data is available as a partition and builds it once."""
    settings = load_settings()
    known = set(context.instance.get_dynamic_partitions(networks.name))
    registry = load_registry(settings)
    ready = sorted(n for n, spec in registry.items() if spec.available(settings))
    new = [n for n in ready if n not in known]
    waiting = sorted(set(registry) - set(ready))
    if waiting:
        context.log.info(f"networks waiting for their data: {waiting}")
    return dg.SensorResult(
        dynamic_partitions_requests=[networks.build_add_request(new)] if new else [],
        run_requests=[dg.RunRequest(partition_key=n, run_key=f"topology-initial-{n}") for n in new],
    )
