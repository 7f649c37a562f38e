"""Shared test helpers: paths, and skips that say why."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
SCHEMAS = ROOT.parent / "shared" / "schemas"


def need_root_netns() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create throw-away network namespaces")


def need_schemas() -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(f"reference schemas not found at {SCHEMAS} (a checkout without ../shared/)")
