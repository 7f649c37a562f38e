"""The run-time failures (exit status 1) every runtime module may raise.

Kept apart from the modules that import Docker, so the CLI can catch them
without importing the Docker SDK.
"""

from __future__ import annotations


class RuntimeFailure(RuntimeError):
    """A failure at run time (exit status 1)."""


class ImageError(RuntimeFailure):
    """The node image could not be built."""


RUNTIME_ERRORS = (RuntimeFailure,)


class NetworkTaken(RuntimeFailure):
    """The node network's subnet was taken by another network after it was chosen."""


class Refused(RuntimeFailure):
    """A command that would replace or change what runs, refused (exit 1, no `error:`)."""
