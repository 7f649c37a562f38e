"""The `kgen` command line (docs/reference.md, "Commands"): one module per command group.

Each module registers its commands on the shared `app` and imports heavy
modules (Docker SDK, Jinja2, the checks) inside the commands that need them.
The console script is `generator.__main__:main`, which runs a plain `kgen exec`
without importing this package (typer) at all.
"""

from generator.cli import (  # noqa: F401  (registers the commands, in --help order)
    capture,
    check,
    graph,
    lifecycle,
    logs,
    ls,
    schema,
    trace,
)
from generator.cli.app import app

__all__ = ["app"]
