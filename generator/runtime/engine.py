"""The Docker engine as kgen uses it: one client, the lab label, run-time failures.

Containers and networks carry `kgen.lab=<name>` (containerlab's way): the
label, not a directory, is the source of truth for what belongs to a lab.
The client honours DOCKER_HOST (and DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) as
the docker CLI does, and every call it makes is bounded by ENGINE_TIMEOUT.
"""

from __future__ import annotations

from typing import Any

import docker

from generator.runtime.errors import EngineUnreachable

LABEL = "kgen.lab"
# Seconds any one Engine API call may take. A 250-node lab on a loaded machine
# keeps dockerd busy for seconds per call; a hung engine still ends in an error.
ENGINE_TIMEOUT = 120


def docker_client(timeout: int = ENGINE_TIMEOUT) -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception:  # docker-py's many ways of not connecting: no socket, refused, TLS, ...
        raise EngineUnreachable() from None


def lab_containers(client: docker.DockerClient, name: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{LABEL}={name}"})
