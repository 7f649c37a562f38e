"""The documents of `kgen trace` and `kgen status`, typed once for both sides
(standard library only; part of the host<->node contract of generator.node.contract).

- TracePlan (with its TraceMatch, TraceCapture and TraceProbe): the first line the
  host writes to each node's trace helper (`docker exec -i ... python3 -m
  generator.node.trace`); built by generator.trace.plan, read by generator.node.trace.
- TraceProbeResult and TraceReport: the helper's answers, read by generator.trace.
- StatusReport: `kgen status --json`, built by generator.runtime.status, drawn by
  generator.graph.
- TraceResult: `kgen trace --json`, built by generator.trace, read back by
  `kgen graph --trace`.

tests/unit/test_documents.py fails when what a side builds drifts from these types.
"""

from __future__ import annotations

import json
from typing import NotRequired, TypedDict, cast

from generator.node.contract import (
    ClientSpec,
    Cluster,
    ServicePortSpec,
)

# generator.trace and the node's generator.node.trace; the status report and the trace
# result are the host's documents that `kgen graph` draws from.)


class TraceMatch(TypedDict):
    """One flow a node arms (`-j TRACE` / `meta nftrace set 1`); absent keys match anything."""

    proto: str  # tcp | udp | icmp
    src: NotRequired[str | None]
    dst: NotRequired[str | None]
    sport: NotRequired[int]
    dport: NotRequired[int]
    icmp_type: NotRequired[str]  # echo-request | echo-reply
    icmp_id: NotRequired[int]


class TraceCapture(TypedDict):
    """What the node records on its underlay while armed."""

    iface: str
    vxlan_port: int
    ports: list[int]  # frames carrying one of these ports (any for icmp)
    inside: list[str]  # unencapsulated frames to or from these ranges (host-gw)


class TraceProbe(TypedDict):
    """The one request the source sends (generator.node.probe's modes)."""

    mode: str  # http | udp | icmp
    host: str
    port: int
    arg: str
    timeout: float
    sport: int
    netns: str | None  # the source pod's netns; None: the member's own


class TracePlan(TypedDict):
    """The first line a trace helper reads: what this member arms, records and sends."""

    id: str
    mode: str  # iptables | nftables
    member: str
    node: bool  # False: a client, which only sends the probe
    proto: str
    deadline: int  # unix time after which anyone may remove the rules
    matches: list[TraceMatch]
    capture: TraceCapture | None
    probe: TraceProbe | None
    linger: NotRequired[float]  # seconds to wait for the last events after "stop"


class TraceTried(TypedDict):
    name: str  # one name of the search walk, as asked
    rcode: str  # NOERROR | NXDOMAIN | REFUSED | ...
    answers: list[str]


class TraceLookupAnswer(TypedDict):
    """A DNS probe's outcome (generator.node.trace_dns): the walk of the search list."""

    name: str  # the last name asked: the one whose answer counts
    server: str  # ip:port, from the pod's resolv.conf
    answers: list[str]  # its A records
    rcode: str
    tried: list[TraceTried]  # every name asked, in order


class TraceProbeResult(TypedDict):
    ok: bool
    answer: str | None
    error: str | None
    ms: float
    backlogDrops: int  # packets the kernel's input backlogs dropped meanwhile
    lookup: NotRequired[TraceLookupAnswer]  # the probe was a DNS lookup (mode "dns")


class FrameEncap(TypedDict):
    src: str
    dst: str
    sport: int
    dport: int
    vni: int


class Frame(TypedDict):
    """A frame of the flow seen on the underlay: the inner IPv4 packet, and its tunnel."""

    src: str
    dst: str
    id: int  # IP identification
    sport: int | None
    dport: int | None
    icmp_type: NotRequired[int]
    icmp_id: NotRequired[int]
    encap: FrameEncap | None
    outgoing: bool
    t: NotRequired[float]  # time.monotonic() on the node (for reading by eye; older helpers left it out)


class IpError(TypedDict):
    error: str


# `ip -j` answers are iproute2's own objects (dst, gateway, dev, prefsrc, type, ...).
IpAnswer = list[dict[str, object]] | IpError


class RouteAsked(TypedDict):
    dst: str
    src: str | None
    iif: str | None
    result: IpAnswer


class BridgePort(TypedDict):
    veth: str | None
    state: str | None


class BridgePorts(TypedDict):
    cbr0: str  # operstate, or "absent"
    pods: dict[str, BridgePort]


class SourceRoute(TypedDict):
    route: IpAnswer
    eth0: NotRequired[IpAnswer]  # the source pod's eth0


class TraceReport(TypedDict):
    """The helper's last line: what the kernel said while the flow was armed."""

    event: str  # "report"
    member: str
    error: str | None
    lines: list[str]  # the monitor's output
    frames: list[Frame]
    routes: list[RouteAsked]
    conntrack: list[str]  # `conntrack -L -p PROTO` lines
    bridge: BridgePorts | None
    natChains: list[str]  # iptables-save lines of KUBE-SVC-/KUBE-SVL- chains
    source: SourceRoute | None


def trace_report(member: str, error: str | None) -> TraceReport:
    """A report that says only why nothing was traced."""
    return {"event": "report", "member": member, "error": error, "lines": [], "frames": [],
            "routes": [], "conntrack": [], "bridge": None, "natChains": [], "source": None}


class NodeRow(TypedDict):
    name: str
    container: str
    ip: str
    podCIDR: str
    zone: str | None  # topology.kubernetes.io/zone
    host: str | None  # the lab's host (lab contract section 11); null on one engine
    state: str  # Ready | NotReady | Absent | a stopped container's state


class PodRow(TypedDict):
    name: str
    namespace: str
    node: str
    ip: str | None
    state: str
    restarts: int


class ServiceRow(TypedDict):
    name: str
    namespace: str
    type: str
    clusterIP: str
    loadBalancerIP: str | None  # LoadBalancer services only
    externalIPs: list[str]
    healthCheckNodePort: int | None  # LoadBalancer services with externalTrafficPolicy Local
    announcedBy: str | None  # the node answering ARP for loadBalancerIP (MetalLB layer 2)
    ports: list[ServicePortSpec]
    endpoints: list[str]  # ip:targetPort of the ready pods
    terminating: list[str]  # ip:targetPort of Terminating pods that still serve


class StatusReport(TypedDict):
    """`kgen status --json`: the desired cluster joined with what runs."""

    name: str
    nodes: list[NodeRow]
    pods: list[PodRow]
    services: list[ServiceRow]
    clients: list[ClientSpec]


class TracePacket(TypedDict):
    src: str  # ip or ip:port
    dst: str


class TraceEncap(TypedDict):
    src: str
    dst: str
    dport: int
    vni: int


class TraceHop(TypedDict):
    direction: str  # request | reply
    node: str
    step: str
    detail: str
    table: str | None
    chain: str | None
    rule: str | None
    packet: TracePacket
    encap: TraceEncap | None
    # "<namespace>/<NetworkPolicy name>" that decided the hop, else None. `kgen trace` always
    # writes it; traces saved before NetworkPolicy (which `kgen graph --trace` reads) lack it.
    policy: NotRequired[str | None]


class TraceEnd(TypedDict):
    name: str
    ip: str


class TraceTarget(TypedDict):
    name: str
    ip: str
    port: int | None
    protocol: str


class TraceDns(TypedDict):
    """The DNS lookup a trace to a name made first (lab contract section 5)."""

    name: str
    server: str
    answers: list[str]
    rcode: str | None  # None: no answer came back
    tried: list[TraceTried]
    verdict: str  # the query's own: answered | refused | dropped | timeout
    answeredBy: str | None  # the DNS pod
    hops: list[TraceHop]


class TraceResult(TypedDict):
    """`kgen trace --json`, which `kgen graph --trace` reads back."""

    src: TraceEnd
    dst: TraceTarget
    verdict: str  # answered | refused | dropped | timeout
    answeredBy: str | None
    hops: list[TraceHop]
    # DST was a DNS name: SRC's lookup, traced first. kgen trace always writes it (null
    # when there was no lookup); kgen graph --trace also reads results from before it.
    dns: NotRequired[TraceDns | None]


# ---------------------------------------------------------------- probe jobs and summaries
#
# `kgen check` hands a node (for its pods) or a client a batch of probe jobs in one
# `docker exec ... python3 -m generator.node.probe batch JOBS` (JOBS: base64 of
# zlib-compressed JSON, a list of ProbeJob) and reads back one ProbeSummary per job,
# in order, as one JSON list on stdout. A single probe (`probe MODE HOST PORT ...
# --json`) prints a list of ProbeAttempt. Both sides build and read these types only.


class ProbeJob(TypedDict):
    netns: str | None  # a pod's network namespace (/run/netns/NAME); None: the container's own
    mode: str  # http | udp | tcp | icmp
    host: str  # a lab address: the node side refuses anything not private or loopback
    port: int
    arg: str  # http: the path; udp: the message
    count: int  # at most this many requests
    timeout: float  # seconds per request
    until: list[str] | None  # stop once every one of these answers was seen
    fail_fast: bool  # stop at the first failed request
    streams: int  # requests in flight at once, each on a new connection


class ProbeSummary(TypedDict):
    sent: int
    ok: int
    answers: dict[str, int]  # answer -> how many requests got it
    errors: dict[str, int]  # error -> how many requests ended with it
    ms_max: float  # the slowest request, in milliseconds


class ProbeAttempt(TypedDict):
    ok: bool
    answer: str | None
    error: str | None
    ms: float


def empty_summary() -> ProbeSummary:
    return {"sent": 0, "ok": 0, "answers": {}, "errors": {}, "ms_max": 0.0}


def failed_summary(error: str) -> ProbeSummary:
    """What the host records for a job whose batch broke before it reported."""
    summary = empty_summary()
    summary["errors"][error] = 1
    return summary


def encode_probe_jobs(jobs: list[ProbeJob]) -> str:
    import base64  # imported here: this block stands alone (and most readers never need it)
    import zlib

    return base64.b64encode(zlib.compress(json.dumps(jobs).encode())).decode()


def decode_probe_jobs(text: str) -> list[ProbeJob]:
    """ValueError (or zlib.error) when `text` is not an encoded job list."""
    import base64
    import zlib

    jobs = json.loads(zlib.decompress(base64.b64decode(text, validate=True)))
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise ValueError("not a list of jobs")
    return cast(list[ProbeJob], jobs)


def docker_cli(cluster: Cluster, container: str) -> list[str]:
    """The docker CLI reaching the engine a node or client of the lab runs on: the local
    `docker`, or a host's engine for a lab that spans hosts (lab contract section 11).
    (runtime/hostcli.py keeps the same rule without `typing`, for `kgen exec`.)"""
    engines = {h["name"]: h["docker"] for h in cluster.get("hosts", [])}
    for member in [*cluster["nodes"], *cluster["clients"]]:
        host = member.get("host")
        if member["container"] == container and host in engines:
            value = engines[str(host)]
            return ["docker", "-H", value] if "://" in value else ["docker", "--context", value]
    return ["docker"]
