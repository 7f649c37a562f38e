"""What every check kind shares: the check itself, its outcome, and the view of the lab.

Each kind is one module of `generator.checks.kinds` (as testinfra has one module
per resource) holding both of its sides: how the lab's plan gets checks of that
kind, and how one is judged. A check names what it sends, from where, to what,
what it expects, and the datapath parts it depends on (`bridge:<node>`,
`veth:<pod>`, `nat:<node>`, `overlay:<node>`): breaking one part must fail
exactly the checks that list it.

Two ways to be judged:
- `ProbeCheck`: probe jobs (requests sent from a pod or a client), run in
  batches per container with every other check's (`generator.checks.batch`),
  then `judge` reads their summaries.
- `CommandCheck`: commands of its own on testinfra hosts (a capture on the wire,
  a DF ping, a conntrack lookup), run by the check's test itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from testinfra.host import Host

from generator.netpol.evaluate import Evaluator
from generator.netpol.lab import lab_evaluator
from generator.node.contract import Cluster, PodSpec
from generator.node.documents import ProbeJob, ProbeSummary, ServiceRow, StatusReport
from generator.node.netpol.policy import Pod as NetpolPod

Pod = PodSpec  # a pod as the checks name it


@dataclass(frozen=True)
class Outcome:
    passed: bool
    seen: str
    # What a check adds to its result row (`kgen check --json`), e.g. a NetworkPolicy
    # check's per-destination reachability, from which the matrix is printed.
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Check:
    kind: ClassVar[str] = ""
    label: str  # which one of its kind: the pytest parameter id
    what: str
    source: str  # a pod or client name
    target: str  # "ip:port" or a pod name
    expected: str
    depends: frozenset[str] = field(default_factory=frozenset)
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def test_name(cls) -> str:
        """The name of this kind's test function in generator/checks/test_datapath.py."""
        return cls.kind.replace("-", "_")

    @property
    def id(self) -> str:
        """The check's pytest test name, e.g. `clusterip[web:80 from pod-0]`: what `-k`
        matches, JUnit's testcase name, the id in `--json`."""
        return f"{self.test_name()}[{self.label}]"


class ProbeCheck(Check):
    def jobs(self, lab: LabView) -> list[ProbeJob]:
        raise NotImplementedError

    def judge(self, lab: LabView, summaries: list[ProbeSummary]) -> Outcome:
        raise NotImplementedError


class CommandCheck(Check):
    def run(self, lab: LabView) -> Outcome:
        raise NotImplementedError


class LabView:
    """The running lab as checks see it: cluster state, pod addresses, testinfra hosts.

    `host` is `KgenLab.host`: a pod's host runs its commands in the pod's network
    namespace. Pod addresses are those of `status` when the run began.
    """

    def __init__(self, cluster: Cluster, status: StatusReport, host: Any) -> None:
        self.cluster = cluster
        self.pod_ip: dict[str, str] = {p["name"]: p["ip"] for p in status["pods"] if p["ip"]}
        self.pod_node = {p["name"]: p["node"] for p in cluster["pods"]}
        self._host = host

    def host(self, name: str) -> Host:
        host: Host = self._host(name)
        return host

    def netns_of(self, source: str) -> str | None:
        """The network namespace a source's probes start in: a pod's own, a client's none."""
        return source if source in self.pod_node else None

    def container_of(self, source: str) -> str:
        """The member whose container a source's probes start in: a pod's node, or a client."""
        return self.pod_node.get(source, source)


# ---- planning helpers shared by the kinds


class Planning:
    """The cluster a plan is made for, and what its kinds look up in it."""

    def __init__(self, cluster: Cluster, status: StatusReport | None = None) -> None:
        self.cluster = cluster
        self.status = status  # the running lab's `kgen status --json`, when there is one
        self.servers = [p for p in cluster["pods"] if serves(p)]
        self.node = {n["name"]: n for n in cluster["nodes"]}
        self.conntrack_planned = False  # one conntrack check per lab
        # The lab's NetworkPolicies: None when it has none (then nothing is isolated). The
        # other kinds plan only traffic the policies allow; the netpol kind checks the rest.
        self.policy: Evaluator | None = lab_evaluator(cluster)
        self._netpol_pods = {p.name: p for p in self.policy.cluster.pods} if self.policy else {}

    def allows(self, src: Pod | str, dst: Pod | str, port: int, protocol: str = "TCP") -> bool:
        """Whether the lab's policies allow a connection from `src` to `dst` (pods, or the
        address of a node or client), to `port` of the destination (after any DNAT)."""
        if self.policy is None:
            return True
        src_end, dst_end = self._end(src), self._end(dst)
        if src_end is None or dst_end is None:  # a pod without an address: nothing isolated yet
            return True
        return self.policy.decide(src_end, dst_end, port, protocol).allowed

    def _end(self, end: Pod | str) -> NetpolPod | str | None:
        return end if isinstance(end, str) else self._netpol_pods.get(end["name"])

    def outsiders(self) -> list[str]:
        """Addresses traffic from outside the pods comes from: the clients' and the nodes'."""
        return [*(c["ip"] for c in self.cluster["clients"]), *(n["ip"] for n in self.cluster["nodes"])]

    def open_to_outside(self, backends: list[Pod], port: int, protocol: str) -> bool:
        """Whether every client and node may reach every backend (NodePorts, LoadBalancer IPs,
        external IPs: the backend sees a client's or a node's address, by the traffic policy)."""
        return all(self.allows(ip, b, port, protocol) for ip in self.outsiders() for b in backends)

    def listed(self, svc: Mapping[str, Any]) -> ServiceRow | None:
        """The service as the running lab's status lists it (None: no status, or not there)."""
        if self.status is None:
            return None
        key = (svc.get("namespace") or "default", svc["name"])
        return next((s for s in self.status.get("services", [])
                     if (s.get("namespace") or "default", s["name"]) == key), None)

    def path(self, *pods: Pod) -> set[str]:
        """Datapath parts a packet between these pods crosses."""
        parts = {f"veth:{p['name']}" for p in pods} | {f"bridge:{p['node']}" for p in pods}
        nodes = {p["node"] for p in pods}
        if len(nodes) > 1:
            parts |= {f"overlay:{n}" for n in nodes}
        return parts

    def service_path(self, source: Pod, backends: list[Pod]) -> frozenset[str]:
        """A source's node NATs; then the path to every backend it may be sent to."""
        parts = {f"nat:{source['node']}"}
        for b in backends:
            parts |= self.path(source, b)
        return frozenset(parts)


def serves(pod: Pod) -> bool:
    """Pods with a test-server container answer /hostname and /clientip."""
    return any(not c.get("command") for c in pod["containers"])


def svc_name(svc: Mapping[str, Any]) -> str:
    """A service as checks name it: `web` in `default`, else `web.shop` (SERVICE.NAMESPACE),
    so that `web` in two namespaces gives two checks, not one id twice."""
    namespace = svc.get("namespace") or "default"
    return svc["name"] if namespace == "default" else f"{svc['name']}.{namespace}"


def names(pods: list[Pod]) -> list[str]:
    return sorted(p["name"] for p in pods)


def shown(pods: list[str], at_most: int = 4) -> str:
    """Backends for the table: all of a few, else how many and the first ones."""
    pods = sorted(pods)
    if len(pods) <= at_most:
        return ", ".join(pods)
    return f"{len(pods)} backends ({', '.join(pods[:at_most - 1])}, …)"
