"""The run-time failures (exit status 1) every runtime module may raise.

Kept apart from the modules that import Docker, so the CLI can catch them
without importing the Docker SDK.
"""

from __future__ import annotations


class RuntimeFailure(RuntimeError):
    """A failure at run time (exit status 1)."""


class ComposeError(RuntimeFailure):
    """`docker compose` (or `docker-compose`) failed or is missing."""


class ImageError(RuntimeFailure):
    """The node image could not be built."""


RUNTIME_ERRORS = (RuntimeFailure,)
