"""Read deploy/compose/compose.yaml and lay a service's mounts out in a temporary root.

Why: no container engine runs here, yet each service's configuration should be checked by the
real tool (promtool, amtool, mosquitto) exactly as the container would see it: same file names at
the same paths relative to each other. Symlinking every bind mount's source to its container path
under a temporary root gives that view without copying or editing the files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy/compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
HA_DIR = COMPOSE_DIR / "ha"  # the high-availability example: PostgreSQL, two replicas, Prometheus


@dataclass(frozen=True)
class Mount:
    source: Path  # on the host, resolved against the compose directory
    target: PurePosixPath  # in the container
    read_only: bool


def load_compose(compose_dir: Path = COMPOSE_DIR) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((compose_dir / "compose.yaml").read_text(encoding="utf-8"))
    return doc


def bind_mounts(service: str, doc: dict[str, Any] | None = None, compose_dir: Path = COMPOSE_DIR) -> list[Mount]:
    """Bind mounts of a service (named volumes left out), short syntax `src:dst[:ro]`."""
    doc = doc or load_compose(compose_dir)
    out = []
    for vol in doc["services"][service].get("volumes", []):
        parts = str(vol).split(":")
        if not parts[0].startswith((".", "/")):
            continue  # named volume
        out.append(Mount((compose_dir / parts[0]).resolve(), PurePosixPath(parts[1]), "ro" in parts[2:]))
    return out


def secret_mounts(service: str, doc: dict[str, Any] | None = None, compose_dir: Path = COMPOSE_DIR) -> list[Mount]:
    """Secrets of a service: /run/secrets/NAME unless a long-syntax target says otherwise."""
    doc = doc or load_compose(compose_dir)
    out = []
    for s in doc["services"][service].get("secrets", []):
        name, target = (s, f"/run/secrets/{s}") if isinstance(s, str) else (s["source"], s.get("target"))
        target = target or f"/run/secrets/{name}"
        if not target.startswith("/"):
            target = f"/run/secrets/{target}"
        out.append(Mount((compose_dir / doc["secrets"][name]["file"]).resolve(), PurePosixPath(target), True))
    return out


def materialize(
    service: str, root: Path, secrets: dict[str, Path] | None = None, compose_dir: Path = COMPOSE_DIR
) -> Path:
    """Symlink the service's bind mounts (and given secret files, by secret target) under `root`."""
    doc = load_compose(compose_dir)
    mounts = bind_mounts(service, doc, compose_dir)
    secret_sources = {m.target: m for m in secret_mounts(service, doc, compose_dir)}
    for target, src in (secrets or {}).items():
        mounts.append(Mount(src, PurePosixPath(target), True))
        secret_sources.pop(PurePosixPath(target), None)
    for m in mounts:
        dest = root / m.target.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        os.symlink(m.source, dest)
    return root


def in_root(root: Path, container_path: str) -> Path:
    return root / PurePosixPath(container_path).relative_to("/")
