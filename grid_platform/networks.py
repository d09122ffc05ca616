"""The network registry: which networks the platform serves and where each one comes from.

Entries come from ``networks.yaml`` in the repository and from ``$GRID_DATA_DIR/networks/*.yaml``
(operator-added networks). A network's source may be a pandapower example network, a SimBench
code, CIM/CGMES files (paths relative to ``$GRID_DATA_DIR/downloads``) or a Digital-Twin URL;
the rest of the platform only sees the common :class:`grid_platform.topology.Network`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grid_platform.settings import PROJECT_ROOT, Settings

NETWORK_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
SOURCES = ("pandapower", "simbench", "cgmes", "digital_twin")


class RegistryError(ValueError):
    """A registry entry is malformed; the message names the entry and the file."""


@dataclass(frozen=True)
class NetworkSpec:
    network_id: str
    source: str
    title: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    origin: str = ""

    def files(self, settings: Settings) -> list[Path]:
        return [settings.downloads_dir / f for f in self.params.get("files", [])]

    def dt_url(self, settings: Settings) -> str:
        """Digital-Twin base URL: the entry's own ``url``, else ``$DT_API_URL``."""
        return str(self.params.get("url") or settings.dt_api_url).rstrip("/")

    def dt_network(self) -> str:
        """The network's id in the Digital Twin (``network``), else the platform's network_id."""
        return str(self.params.get("network") or self.network_id)

    def available(self, settings: Settings) -> bool:
        """CGMES data is licensed and downloaded at set-up, a Digital Twin must answer and hold the
        network; until then the network waits (a later build of a known network still fails loudly)."""
        if self.source == "digital_twin":
            from grid_platform.topology.digital_twin import dt_holds

            return dt_holds(self.dt_url(settings), self.dt_network())
        return all(p.exists() for p in self.files(settings))


def _entries(path: Path) -> list[NetworkSpec]:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from None
    specs = []
    for i, entry in enumerate(doc.get("networks") or []):
        if not isinstance(entry, dict):
            raise RegistryError(f"{path}: entry {i} is not a mapping")
        network_id, source = entry.get("network_id"), entry.get("source")
        if not isinstance(network_id, str) or not NETWORK_ID_RE.match(network_id):
            raise RegistryError(f"{path}: entry {i}: network_id {network_id!r} must match {NETWORK_ID_RE.pattern}")
        if source not in SOURCES:
            raise RegistryError(f"{path}: network {network_id}: source {source!r} is not one of {SOURCES}")
        params = {k: v for k, v in entry.items() if k not in ("network_id", "source", "title")}
        specs.append(NetworkSpec(network_id, source, entry.get("title", ""), params, str(path)))
    return specs


def load_registry(settings: Settings, repo_file: Path = PROJECT_ROOT / "networks.yaml") -> dict[str, NetworkSpec]:
    files = [repo_file] if repo_file.exists() else []
    extra_dir = settings.data_dir / "networks"
    if extra_dir.exists():
        files += sorted(extra_dir.glob("*.yaml"))
    registry: dict[str, NetworkSpec] = {}
    for path in files:
        for spec in _entries(path):
            if spec.network_id in registry:
                raise RegistryError(f"{path}: network {spec.network_id} is already defined in "
                                    f"{registry[spec.network_id].origin}")
            registry[spec.network_id] = spec
    return registry


def load_network(spec: NetworkSpec, settings: Settings):
    """The network of ``spec`` in the common model (imports the heavy libraries lazily)."""
    from grid_platform import topology

    if spec.source == "pandapower":
        loaders = {"mv_oberrhein": topology.mv_oberrhein_network, "lv_schutterwald": topology.lv_schutterwald_network}
        name = spec.params.get("name")
        if name not in loaders:
            raise RegistryError(f"network {spec.network_id}: unknown pandapower network {name!r}")
        return loaders[name](spec.network_id)
    if spec.source == "simbench":
        return topology.simbench_network(spec.params["code"], spec.network_id)
    if spec.source == "digital_twin":
        return topology.digital_twin_network(spec.dt_url(settings), spec.dt_network(), spec.network_id)
    missing = [str(p) for p in spec.files(settings) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"network {spec.network_id}: CIM files not downloaded yet: {missing} "
                                f"(run scripts/fetch_cgmes.py)")
    return topology.read_cgmes(spec.files(settings), spec.network_id)
