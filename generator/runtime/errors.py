"""The run-time failures (exit status 1) every runtime module may raise.

Kept apart from the modules that import Docker, so the CLI can catch them
without importing the Docker SDK.
"""

from __future__ import annotations


class RuntimeFailure(RuntimeError):
    """A failure at run time (exit status 1)."""


class ImageError(RuntimeFailure):
    """The node image could not be built."""


class EngineUnreachable(RuntimeFailure):
    """The Docker engine does not answer: distinct from "no lab is running"."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address or engine_address()
        super().__init__(f"cannot reach the Docker engine at {self.address}: is dockerd running?")


def engine_address() -> str:
    """Where the Docker SDK and a context-less docker CLI look for the engine."""
    import os

    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


RUNTIME_ERRORS = (RuntimeFailure,)


class NetworkTaken(RuntimeFailure):
    """The node network's subnet was taken by another network after it was chosen."""


class Refused(RuntimeFailure):
    """A command that would replace or change what runs, refused (exit 1, no `error:`)."""
