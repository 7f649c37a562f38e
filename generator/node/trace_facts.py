"""What a node knows about a traced flow once it is disarmed (`kgen trace`): the routing
decisions (`ip route get`) for the addresses the monitor showed, the conntrack
entries of the protocol, which veth on cbr0 leads to which pod, kube-proxy's
endpoint-choosing chains, and the route the source itself took.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
from pathlib import Path

from generator.node import proc
from generator.node.documents import BridgePort, BridgePorts, IpAnswer, RouteAsked, SourceRoute, TraceProbe

MAX_ROUTES = 16
MAX_CONNTRACK = 500
Question = tuple[str, str | None, str | None]  # (dst, src, iif) of one `ip route get`


def run(*argv: str) -> proc.Completed:
    return proc.run(argv, input=None, timeout=10.0)


def ip_json(*args: str, netns: str | None = None) -> IpAnswer:
    """`ip -j ARGS`: iproute2's list of objects, or {"error": what it said}."""
    argv = ["ip", *(["-n", netns] if netns else []), "-j", *args]
    result = run(*argv)
    if result.returncode != 0:
        return {"error": result.stderr.strip()}
    try:
        answer = json.loads(result.stdout) if result.stdout.strip() else []
    except ValueError:
        return {"error": result.stdout.strip()}
    if not isinstance(answer, list):
        return {"error": f"unexpected answer: {result.stdout.strip()[:200]}"}
    return [item for item in answer if isinstance(item, dict)]


_PACKET = re.compile(r"\b(IN|OUT|SRC|DST)=(\S+)")
_NFT_PACKET = [(re.compile(r'\biif "([^"]+)"'), "IN"), (re.compile(r'\boif "([^"]+)"'), "OUT"),
               (re.compile(r"\bip saddr (\S+)"), "SRC"), (re.compile(r"\bip daddr (\S+)"), "DST")]
_DNAT = re.compile(r"(?:--to-destination|dnat to) (\d+\.\d+\.\d+\.\d+)")


def packet_fields(line: str) -> dict[str, str] | None:
    """IN, OUT, SRC, DST of a monitor's packet line (xtables-monitor or nft monitor trace)."""
    if line.startswith("PACKET:"):
        return dict(_PACKET.findall(line))
    if line.startswith("trace id ") and " packet: " in line:
        out: dict[str, str] = {}
        for pattern, key in _NFT_PACKET:
            found = pattern.search(line)
            if found:
                out[key] = found.group(1)
        return out
    return None


def route_questions(lines: list[str]) -> list[Question]:
    """(dst, src, iif) of every packet the monitor showed, and of every DNAT target."""
    asked: list[Question] = []
    seen_src: list[tuple[str | None, str | None]] = []
    for line in lines:
        f = packet_fields(line)
        if f is not None:
            if "DST" not in f:
                continue
            iif = f.get("IN")
            q = (f["DST"], f.get("SRC") if iif else None, iif)
            if q not in asked:
                asked.append(q)
            if (q[1], iif) not in seen_src:
                seen_src.append((q[1], iif))
        for target in _DNAT.findall(line) if f is None else []:
            for src, iif in seen_src:
                q = (target, src, iif)
                if q not in asked:
                    asked.append(q)
    return asked[:MAX_ROUTES]


def routes(lines: list[str]) -> list[RouteAsked]:
    def ask(q: Question) -> RouteAsked:
        dst, src, iif = q
        args = ["route", "get", dst, *(["from", src, "iif", iif] if iif and src else [])]
        return {"dst": dst, "src": src, "iif": iif, "result": ip_json(*args)}

    questions = route_questions(lines)
    if not questions:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(questions)) as pool:
        return list(pool.map(ask, questions))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def bridge_ports() -> BridgePorts:
    """Which veth on cbr0 leads to which pod namespace."""
    netns = run("ip", "netns", "list").stdout
    by_id = {m.group(2): m.group(1) for m in re.finditer(r"^(\S+) \(id: (\d+)\)", netns, re.M)}
    ports: dict[str, BridgePort] = {}
    links = ip_json("link", "show", "master", "cbr0")
    for link in links if isinstance(links, list) else []:
        pod = by_id.get(str(link.get("link_netnsid")))
        if pod:
            ports[pod] = {"veth": _text(link.get("ifname")), "state": _text(link.get("operstate"))}
    bridge = ip_json("link", "show", "cbr0")
    state = _text(bridge[0].get("operstate")) if isinstance(bridge, list) and bridge else "absent"
    return {"cbr0": state or "absent", "pods": ports}


def conntrack(proto: str) -> list[str]:
    return run("conntrack", "-L", "-p", proto).stdout.splitlines()[:MAX_CONNTRACK]


def nat_chains() -> list[str]:
    """The endpoint-choosing chains (kube-proxy's iptables or nftables layout)."""
    saved = run("iptables-save", "-t", "nat").stdout.splitlines()
    return [line for line in saved if line.startswith(("-A KUBE-SVC-", "-A KUBE-SVL-"))]


def source_route(probe: TraceProbe | None) -> SourceRoute | None:
    """The route the source takes to the destination, and its eth0 when it is a pod."""
    if not probe:
        return None
    netns = probe.get("netns")
    out: SourceRoute = {"route": ip_json("route", "get", probe["host"], netns=netns)}
    if netns:
        out["eth0"] = ip_json("link", "show", "eth0", netns=netns)
    return out


def backlog_drops() -> int:
    """Packets the kernel dropped from its per-CPU input backlogs so far (all namespaces):
    a packet that vanishes between two places with no rule to blame may be one of them."""
    try:
        rows = Path("/proc/net/softnet_stat").read_text().split("\n")
        return sum(int(r.split()[1], 16) for r in rows if r.strip())
    except (OSError, ValueError, IndexError):
        return 0
