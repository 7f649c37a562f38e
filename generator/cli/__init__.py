"""The `kgen` command line (lab contract §2): one module per command group.

Each module registers its commands on the shared `app` and imports heavy
modules (Docker SDK, Jinja2, the checks) inside the commands that need them,
so that `kgen exec` starts fast.
"""

from generator.cli import check, lifecycle  # noqa: F401  (registers the commands)
from generator.cli.app import app

__all__ = ["app"]
