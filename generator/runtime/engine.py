"""The Docker engine as kgen uses it: one client, the lab label, run-time failures.

Containers and networks carry `kgen.lab=<name>` (containerlab's way): the
label, not a directory, is the source of truth for what belongs to a lab.
"""

from __future__ import annotations

from typing import Any

import docker

from generator.runtime.errors import EngineUnreachable

LABEL = "kgen.lab"


def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
        return client
    except Exception:  # docker-py's many ways of not connecting: no socket, refused, TLS, ...
        raise EngineUnreachable() from None


def lab_containers(client: docker.DockerClient, name: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{LABEL}={name}"})
