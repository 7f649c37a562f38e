"""The names a lab gives its Docker objects (docs/reference.md, "What runs where, and the names")."""

from __future__ import annotations

from pathlib import Path


def container_name(lab: str, member: str) -> str:
    return f"kgen-{lab}-{member}"


def project_name(lab: str) -> str:
    return f"kgen-{lab}"


def network_name(lab: str) -> str:
    return f"kgen-{lab}"


def rendered_dir(lab: str, base: Path | None = None) -> Path:
    """The default render directory: `./kgen-<name>/`."""
    return (base or Path.cwd()) / f"kgen-{lab}"
