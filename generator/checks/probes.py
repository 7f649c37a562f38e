"""Run one planned check against a live lab through testinfra hosts.

Sources are pods (commands run in the node under `ip netns exec <pod>`) or
clients (commands run in the client container). Requests go to lab
addresses only and are bounded in count and time.
"""

from __future__ import annotations

import functools
import json
import shlex
from dataclasses import dataclass
from typing import Any

import testinfra

from generator.checks.plan import Check

PROBE = "python3 -m generator.node.probe"
TIMEOUT = 1.5  # lab round trips take well under a millisecond
DRAWS = 8  # requests where any backend may answer: a broken one shows with p = 1 - 2**-8


@dataclass
class Outcome:
    passed: bool
    seen: str


class Lab:
    """The live lab as the checks see it: cluster state + status + hosts."""

    def __init__(self, cluster: dict[str, Any], status: dict[str, Any]) -> None:
        self.cluster = cluster
        self.pod_ip = {p["name"]: p["ip"] for p in status["pods"]}
        self.pod_node = {p["name"]: p["node"] for p in cluster["pods"]}
        self.ip_pod = {ip: name for name, ip in self.pod_ip.items() if ip}
        self.members = {m["name"]: m for m in cluster["nodes"] + cluster["clients"]}

    @functools.cache  # noqa: B019 - one host per container for the life of a run
    def host(self, member: str) -> Any:
        return testinfra.get_host(f"docker://{self.members[member]['container']}")

    def run(self, source: str, command: str) -> Any:
        """A shell command as `source` sees the network (pod netns or client)."""
        if source in self.pod_node:
            node = self.pod_node[source]
            return self.host(node).run(f"ip netns exec {shlex.quote(source)} {command}")
        return self.host(source).run(command)

    def probe(self, source: str, mode: str, target: str, arg: str = "", count: int = 1,
              timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        ip, port = target.rsplit(":", 1)
        # Every check needs all its requests to succeed: stop at the first failure.
        cmd = (f"{PROBE} {mode} {ip} {port} {shlex.quote(arg) if arg else ''} "
               f"--count {count} --timeout {timeout} --fail-fast --json")
        result = self.run(source, cmd)
        try:
            return list(json.loads(result.stdout))
        except ValueError:
            return [{"ok": False, "answer": None,
                     "error": (result.stderr or result.stdout).strip()[:200], "ms": 0}]


def _answers(results: list[dict[str, Any]]) -> list[str]:
    return [str(r["answer"]) for r in results if r.get("ok")]


def _errors(results: list[dict[str, Any]]) -> list[str]:
    return sorted({str(r.get("error")) for r in results if not r.get("ok")})


def _all_from(results: list[dict[str, Any]], allowed: set[str]) -> bool:
    """Every request answered, and only by allowed answers."""
    answers = _answers(results)
    return bool(results) and len(answers) == len(results) and set(answers) <= allowed


def _summary(results: list[dict[str, Any]]) -> str:
    answers = _answers(results)
    counts = {a: answers.count(a) for a in sorted(set(answers))}
    text = ", ".join(f"{a}×{n}" for a, n in counts.items())
    errors = _errors(results)
    if errors:
        text += (" " if text else "") + f"errors: {'; '.join(errors)}"
    return text or "nothing"


def pod_to_pod(lab: Lab, check: Check) -> Outcome:
    target = f"{lab.pod_ip[check.target]}:8080"
    results = lab.probe(check.source, "http", target, "/clientip")
    seen = _summary(results)
    answers = _answers(results)
    ok = bool(answers) and answers[0].split(":")[0] == lab.pod_ip[check.source]
    return Outcome(ok, seen)


def wire(lab: Lab, check: Check) -> Outcome:
    p = check.params
    src_pod, dst_ip = check.source, lab.pod_ip[check.target]
    if p["backend"] == "vxlan":
        capture = f"udp dst port {p['port']} and src host {p['src_ip']} and dst host {p['dst_ip']}"
    else:
        capture = f"ip src host {lab.pod_ip[src_pod]} and dst host {dst_ip}"
    script = (f"timeout 5 tcpdump -l -nn -c 1 -i eth0 {shlex.quote(capture)} 2>/dev/null & "
              f"sleep 0.7; ip netns exec {shlex.quote(src_pod)} ping -c 2 -W 1 {dst_ip} "
              f">/dev/null; wait")
    result = lab.host(p["capture_node"]).run(f"sh -c {shlex.quote(script)}")
    line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
    return Outcome(bool(line), line[:140] or "no packet captured")


def mtu(lab: Lab, check: Check) -> Outcome:
    size = check.params["payload"]
    result = lab.run(check.source, f"ping -M do -c 1 -W 2 -s {size} {lab.pod_ip[check.target]}")
    ok = result.rc == 0
    return Outcome(ok, f"{size}-byte DF ping: " + ("crossed" if ok else "did not cross"))


def clusterip(lab: Lab, check: Check) -> Outcome:
    p = check.params
    results = lab.probe(check.source, "http", check.target, "/hostname", p["requests"])
    clientip = lab.probe(check.source, "http", check.target, "/clientip")
    seen_ip = (_answers(clientip) or ["?:?"])[0].split(":")[0]
    backends = set(p["backends"])
    own = {lab.pod_ip[check.source], p.get("hairpin_gateway")}
    ok = (_all_from(results, backends)
          and (p["requests"] == 1 or set(_answers(results)) == backends) and seen_ip in own)
    return Outcome(ok, f"{_summary(results)}; backend saw {seen_ip}")


def conntrack(lab: Lab, check: Check) -> Outcome:
    """The DNAT of this very request: the backend reports our source port (/clientip),
    and the node's conntrack table must hold that flow with a backend as its reply."""
    vip, port = check.target.rsplit(":", 1)
    answers = _answers(lab.probe(check.source, "http", check.target, "/clientip"))
    if not answers:
        return Outcome(False, "the request itself failed")
    sport = answers[0].rsplit(":", 1)[1]
    result = lab.host(check.params["node"]).run(
        f"conntrack -L -p tcp --orig-dst {vip} --orig-port-dst {port} --orig-port-src {sport} "
        "2>/dev/null")
    backend_ips = {lab.pod_ip[b] for b in check.params["backends"]}
    for line in result.stdout.splitlines():
        # The reply direction's source is the DNATed backend: the second src= on the line.
        sources = [f.split("=", 1)[1] for f in line.split() if f.startswith("src=")]
        if len(sources) == 2 and sources[1] in backend_ips:
            return Outcome(True, f"{sources[0]}:{sport} → {vip}:{port}, reply from {sources[1]}")
    return Outcome(False, f"no conntrack entry for source port {sport}")


def clusterip_udp(lab: Lab, check: Check) -> Outcome:
    results = lab.probe(check.source, "udp", check.target, "hostname", DRAWS)
    return Outcome(_all_from(results, set(check.params["backends"])), _summary(results))


def affinity(lab: Lab, check: Check) -> Outcome:
    results = lab.probe(check.source, "http", check.target, "/hostname", check.params["requests"])
    ok = _all_from(results, set(check.params["backends"])) and len(set(_answers(results))) == 1
    return Outcome(ok, _summary(results))


def hairpin(lab: Lab, check: Check) -> Outcome:
    results = lab.probe(check.source, "http", check.target, "/hostname", check.params["requests"])
    ok = _all_from(results, set(check.params["backends"])) and check.params["self"] in _answers(
        results)
    return Outcome(ok, _summary(results))


def no_endpoints(lab: Lab, check: Check) -> Outcome:
    results = lab.probe(check.source, "tcp", check.target, timeout=3.0)
    r = results[0]
    refused = not r.get("ok") and "refused" in str(r.get("error", "")).lower()
    return Outcome(refused and float(r.get("ms", 9999)) < 1000,
                   f"{r.get('error') or 'connected'} after {float(r.get('ms', 0)):.0f} ms")


def nodeport(lab: Lab, check: Check) -> Outcome:
    p = check.params
    if p["drop"]:
        results = lab.probe(check.source, "http", check.target, "/clientip")
        error = " ".join(_errors(results)).lower()
        return Outcome(not _answers(results) and "timed out" in error, _summary(results))
    # Several draws: with policy Cluster any backend may serve, and every one must.
    results = lab.probe(check.source, "http", check.target, "/clientip", DRAWS)
    seen = {a.split(":")[0] for a in _answers(results)}
    node = p["node"]
    allowed = {p["client_ip"]} if p["policy"] == "Local" else {node["ip"], node["gateway"],
                                                               node["vtep"]}
    ok = len(_answers(results)) == len(results) and bool(seen) and seen <= allowed
    errors = _errors(results)
    return Outcome(ok, f"backend saw {', '.join(sorted(seen)) or 'nothing'}"
                   + (f"; errors: {'; '.join(errors)}" if errors else ""))


RUNNERS = {
    "pod-to-pod": pod_to_pod,
    "wire": wire,
    "mtu": mtu,
    "clusterip": clusterip,
    "conntrack": conntrack,
    "clusterip-udp": clusterip_udp,
    "affinity": affinity,
    "hairpin": hairpin,
    "no-endpoints": no_endpoints,
    "nodeport": nodeport,
}


def run_check(lab: Lab, check: Check) -> Outcome:
    try:
        return RUNNERS[check.kind](lab, check)
    except Exception as err:  # a check that cannot run has failed, with the reason shown
        return Outcome(False, f"{type(err).__name__}: {err}"[:200])
