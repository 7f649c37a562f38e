"""Pods' declared container ports, checked as the API server checks a pod's ports
(validateContainerPorts): a name is an IANA_SVC_NAME and unique in the pod.

A container without a command runs the test server, which declares `http` 8080/TCP and
`udp` 8081/UDP (the lab contract, section 4): those names count as taken in its pod,
so a NetworkPolicy's named port means one number on each pod.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from generator.lab import k8s_rules as rules
from generator.lab.errors import Problem, describe, join

# The test server's ports, as every container without a command declares them.
TEST_SERVER_PORTS = ({"name": "http", "containerPort": 8080, "protocol": "TCP"},
                     {"name": "udp", "containerPort": 8081, "protocol": "UDP"})


def declared_ports(container: dict[str, Any]) -> list[dict[str, Any]]:
    """A container's ports: the test server's when it has no command, then its own."""
    implied = list(TEST_SERVER_PORTS) if "command" not in container else []
    return implied + [p for p in container.get("ports") or [] if isinstance(p, dict)]


def port_problems(data: dict[str, Any]) -> Iterator[Problem]:
    pods = data.get("pods")
    for i, pod in enumerate(pods if isinstance(pods, list) else []):
        if isinstance(pod, dict) and isinstance(pod.get("containers", []), list):
            yield from _pod(pod, join("pods", i))


def _pod(pod: dict[str, Any], path: str) -> Iterator[Problem]:
    owners: dict[str, str] = {}
    containers = pod.get("containers") or [{"name": pod.get("name")}]
    for c, container in enumerate(containers):
        if not isinstance(container, dict):
            continue
        if "command" not in container:
            for port in TEST_SERVER_PORTS:
                owners.setdefault(str(port["name"]), f"the test server of container "
                                                     f"{describe(container.get('name'))}")
        given = container.get("ports")
        for p, port in enumerate(given if isinstance(given, list) else []):
            name = port.get("name") if isinstance(port, dict) else None
            if not isinstance(name, str):
                continue
            where = join(join(join(join(path, "containers"), c), "ports"), p) + ".name"
            # The schema's pattern and length say the rest (in the same words as elsewhere).
            bad = [m for m in rules.port_name(name) if "letter (a-z)" in m or "consecutive" in m]
            yield from (Problem(where, f"{name!r} {m}") for m in bad)
            if name in owners:
                yield Problem(where, f"duplicate port name {name!r} in the pod "
                                     f"(already declared by {owners[name]})")
            owners.setdefault(name, where)
