"""A running lab as pytest sees it: its name, its status, and a testinfra Host per member.

`KgenLab` is what the `kgen_lab` fixture gives (lab contract §10), to users'
tests and to `kgen check`'s own. `host(NAME)` is a testinfra Host on the
Docker backend: a node or client runs commands in its container; a pod runs
them in its network namespace, `ip netns exec POD` inside its node's container
(as `kgen exec` does), so that every testinfra module (`interface`, `addr`,
`socket`, `iptables`, ...) reads the pod's own network.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from typing import Any

from testinfra.backend.docker import DockerBackend
from testinfra.host import Host

from generator.node.contract import Cluster
from generator.node.documents import StatusReport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from generator.runtime.locate import LabRef


class MemberBackend(DockerBackend):  # type: ignore[misc]  # testinfra ships no types
    """testinfra's Docker backend through the docker CLI that reaches the member's engine
    (a lab spanning hosts, lab contract section 11)."""

    NAME = "kgen-member"

    def __init__(self, container: str, docker: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(container, **kwargs)
        self.docker = docker or ["docker"]

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        cmd = self.get_command(command, *args)
        prefix = " ".join(shlex.quote(word) for word in self.docker)
        out = self.run_local(f"{prefix} exec %s /bin/sh -c %s", self.name, cmd)
        out.command = self.encode(cmd)
        return out


class PodBackend(MemberBackend):
    """The same, every command run inside one pod's network namespace."""

    NAME = "kgen-pod"

    def __init__(self, container: str, netns: str, docker: list[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(container, docker, **kwargs)
        self.netns = netns

    def get_command(self, command: str, *args: str) -> str:
        inner = super().get_command(command, *args)
        return str(self.quote("ip netns exec %s /bin/sh -c %s", self.netns, inner))

    def get_pytest_id(self) -> str:
        return f"{self.netns}@{self.name}"


def _host(backend: DockerBackend) -> Host:
    host = Host(backend)
    backend.set_host(host)
    return host


class KgenLab:
    """A lab that is up: `.name`, `.status()` (as `kgen status --json`), `.host(NAME)`.

    `cluster` is the lab's rendered cluster state (cluster.json); `status` is called
    for each `.status()` (tests without a lab pass a fixed one).
    """

    def __init__(self, cluster: Cluster, status: Callable[[], StatusReport]) -> None:
        self.cluster = cluster
        self.name = cluster["name"]
        self._status = status
        self._hosts: dict[str, Host] = {}
        self._lock = threading.Lock()
        self._containers = {m["name"]: m["container"]
                            for m in [*cluster["nodes"], *cluster["clients"]]}
        node_container = {n["name"]: n["container"] for n in cluster["nodes"]}
        self._pods = {p["name"]: node_container[p["node"]] for p in cluster["pods"]}

    def __repr__(self) -> str:
        return f"<KgenLab {self.name}>"

    @classmethod
    def running(cls, ref: LabRef) -> KgenLab:
        """The lab `ref` names, read from its rendered directory (it must be up)."""
        from generator.runtime.errors import RuntimeFailure

        cluster = ref.cluster()
        if cluster is None or not ref.is_up:
            raise RuntimeFailure(f"lab {ref.name} is not up; run `kgen up {ref.file_flag}` first")
        paths, name = ref.paths, ref.name

        def status() -> StatusReport:
            from generator.runtime.engine import docker_client
            from generator.runtime.status import status as lab_status

            return lab_status(docker_client(), paths, name)

        return cls(cluster, status)

    def status(self) -> StatusReport:
        return self._status()

    @property
    def members(self) -> list[str]:
        """Every name `host()` takes: nodes and clients, then pods."""
        return [*self._containers, *self._pods]

    def host(self, name: str) -> Host:
        """A testinfra Host for a node, a client or a pod (its network namespace)."""
        with self._lock:
            if name not in self._hosts:
                self._hosts[name] = self._new_host(name)
            return self._hosts[name]

    def _new_host(self, name: str) -> Host:
        from generator.node.documents import docker_cli

        if name in self._containers:
            container = self._containers[name]
            return _host(MemberBackend(container, docker_cli(self.cluster, container)))
        if name in self._pods:
            container = self._pods[name]
            return _host(PodBackend(container, name, docker_cli(self.cluster, container)))
        raise LookupError(f"lab {self.name} has no node, client or pod named {name!r} "
                          f"(known: {', '.join(self.members)})")
