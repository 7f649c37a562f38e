"""Run planned checks against a live lab through testinfra hosts.

Most checks are probes: requests sent from a pod or a client and judged by
their answers. Those are batched: every probe that starts in one container
(a node, for its pods; a client) goes into one `docker exec` running
`python3 -m generator.node.probe batch`, which sends them from inside each
pod's network namespace, several at once, and reports a summary per probe.
The few checks that need more than requests (a capture on the wire, a DF
ping, a conntrack lookup) run their own commands. Batches and those checks
run in parallel, at most `parallel` `docker exec`s at a time.

Requests go to lab addresses only (the node-side probe refuses anything that
is not private or loopback) and are bounded in count (the plan's numbers) and
time (per request, and the run's deadline).
"""

from __future__ import annotations

import functools
import json
import shlex
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import testinfra

from generator.checks.plan import Check
from generator.node.documents import StatusReport

PROBE = "python3 -m generator.node.probe"
# Per request that must succeed. Lab round trips take a millisecond, but on a busy host a
# lost SYN comes back after 1 s and 3 s (TCP's retransmissions): 10 s covers 1+2+4 s.
# Only a failing check ever waits this long (it stops at its first failure).
TIMEOUT = 10.0
DROP_TIMEOUT = 2.0  # a request that must be dropped: how long to wait before calling it dropped
BATCH_JOBS = 48  # probes per `docker exec`
BATCH_WORKERS = 16  # probes a batch runs at once
STREAMS = 4  # requests of one probe in flight at once (each a new connection, a new draw)
PARALLEL = 6  # `docker exec`s at once
DEFAULT_DEADLINE = 300.0


@dataclass
class Outcome:
    passed: bool
    seen: str


class Lab:
    """The live lab as the checks see it: cluster state + status + hosts."""

    def __init__(self, cluster: dict[str, Any], status: StatusReport) -> None:
        self.cluster = cluster
        self.pod_ip: dict[str, Any] = {p["name"]: p["ip"] for p in status["pods"]}
        self.pod_node = {p["name"]: p["node"] for p in cluster["pods"]}
        self.members = {m["name"]: m for m in cluster["nodes"] + cluster["clients"]}
        self._lock = threading.Lock()

    @functools.cache  # noqa: B019 - one host per container for the life of a run
    def _host(self, member: str) -> Any:
        return testinfra.get_host(f"docker://{self.members[member]['container']}")

    def host(self, member: str) -> Any:
        with self._lock:
            return self._host(member)

    def container_of(self, source: str) -> str:
        """The member whose container a source's commands run in: a pod's node, or a client."""
        return self.pod_node.get(source, source)

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

    def batch(self, member: str, jobs: list[dict[str, Any]], deadline: float) -> list[dict[str, Any]]:
        """Run probe jobs in one container; one summary per job (an error summary if it broke)."""
        from generator.node.probe import encode_jobs

        seconds = max(0.5, round(deadline - time.monotonic(), 1))
        # The node-side deadline ends the loops; coreutils timeout ends the process regardless.
        cmd = (f"timeout -k 2 {seconds + 5:.1f} {PROBE} batch {encode_jobs(jobs)} "
               f"--deadline {seconds} --workers {min(BATCH_WORKERS, len(jobs))}")
        result = self.host(member).run(cmd)
        try:
            summaries = json.loads(result.stdout)
            if isinstance(summaries, list) and len(summaries) == len(jobs):
                return summaries
        except ValueError:
            pass
        error = (result.stderr or result.stdout or f"exit {result.rc}").strip()[:200]
        return [{"sent": 0, "ok": 0, "answers": {}, "errors": {error: 1}, "ms_max": 0}
                for _ in jobs]


# ---- probe jobs and their summaries


def job(lab: Lab, source: str, mode: str, target: str, arg: str = "", count: int = 1,
        timeout: float = TIMEOUT, until: Iterable[str] | None = None,
        streams: int = STREAMS) -> dict[str, Any]:
    """A probe job for the node-side batch: up to `count` requests, `streams` at once."""
    ip, port = target.rsplit(":", 1)
    return {"netns": source if source in lab.pod_node else None, "mode": mode, "host": ip,
            "port": int(port), "arg": arg, "count": count, "timeout": timeout,
            "until": sorted(until) if until is not None else None, "fail_fast": True,
            "streams": min(streams, count)}


def _cost(jobs: list[dict[str, Any]]) -> float:
    """A rough time estimate, in requests, to start the longest batches first."""
    return sum(j["count"] / j["streams"] + (100 if j["timeout"] < TIMEOUT else 10) for j in jobs)


def _all_ok(s: dict[str, Any]) -> bool:
    return s["sent"] > 0 and s["ok"] == s["sent"] and not s["errors"]


def _answer_set(s: dict[str, Any]) -> set[str]:
    return set(s["answers"])


def _summary(s: dict[str, Any]) -> str:
    text = ", ".join(f"{a}×{n}" for a, n in sorted(s["answers"].items()))
    if s["errors"]:
        errors = "; ".join(sorted(s["errors"]))
        text += (" " if text else "") + f"errors: {errors}"
    return text or "nothing"


def _ips(s: dict[str, Any]) -> set[str]:
    """The peer addresses /clientip answers reported (ip:port -> ip)."""
    return {a.rsplit(":", 1)[0] for a in s["answers"]}


@dataclass
class Probed:
    """A check made of probe jobs: the jobs, and how to judge their summaries."""

    jobs: list[dict[str, Any]]
    judge: Callable[[list[dict[str, Any]]], Outcome]


def pod_to_pod(lab: Lab, check: Check) -> Probed:
    target = f"{lab.pod_ip[check.target]}:8080"

    def judge(s: list[dict[str, Any]]) -> Outcome:
        ok = _all_ok(s[0]) and _ips(s[0]) == {lab.pod_ip[check.source]}
        return Outcome(ok, _summary(s[0]))

    return Probed([job(lab, check.source, "http", target, "/clientip")], judge)


def dropped(lab: Lab, check: Check) -> Probed:
    """A request that must die unanswered (no local endpoint): it times out."""
    def judge(s: list[dict[str, Any]]) -> Outcome:
        return Outcome(s[0]["ok"] == 0 and "timed out" in s[0]["errors"], _summary(s[0]))

    return Probed([job(lab, check.source, "http", check.target, "/clientip",
                       timeout=DROP_TIMEOUT)], judge)


def clusterip(lab: Lab, check: Check) -> Probed:
    p = check.params
    if p.get("drop"):
        return dropped(lab, check)
    backends = set(p["backends"])
    own = {lab.pod_ip[check.source], p.get("hairpin_gateway")}
    jobs = [job(lab, check.source, "http", check.target, "/hostname", p["requests"],
                until=backends if p["spread"] else None),
            job(lab, check.source, "http", check.target, "/clientip")]

    def judge(s: list[dict[str, Any]]) -> Outcome:
        draws, peer = s
        seen_ip = next(iter(_ips(peer)), "?")
        ok = (_all_ok(draws) and _answer_set(draws) <= backends
              and (not p["spread"] or _answer_set(draws) == backends)
              and _all_ok(peer) and seen_ip in own)
        return Outcome(ok, f"{_summary(draws)}; backend saw {seen_ip}"
                       + ("" if _all_ok(peer) else f" ({_summary(peer)})"))

    return Probed(jobs, judge)


def clusterip_udp(lab: Lab, check: Check) -> Probed:
    backends = set(check.params["backends"])

    def judge(s: list[dict[str, Any]]) -> Outcome:
        return Outcome(_all_ok(s[0]) and _answer_set(s[0]) <= backends, _summary(s[0]))

    return Probed([job(lab, check.source, "udp", check.target, "hostname",
                       check.params["requests"])], judge)


def affinity(lab: Lab, check: Check) -> Probed:
    backends = set(check.params["backends"])

    def judge(s: list[dict[str, Any]]) -> Outcome:
        answers = _answer_set(s[0])
        return Outcome(_all_ok(s[0]) and answers <= backends and len(answers) == 1,
                       _summary(s[0]))

    # One request at a time: the first answer must pin the client before the next asks.
    return Probed([job(lab, check.source, "http", check.target, "/hostname",
                       check.params["requests"], streams=1)], judge)


def hairpin(lab: Lab, check: Check) -> Probed:
    p = check.params

    def judge(s: list[dict[str, Any]]) -> Outcome:
        ok = _all_ok(s[0]) and _answer_set(s[0]) <= set(p["backends"]) and p["self"] in s[0][
            "answers"]
        return Outcome(ok, _summary(s[0]))

    return Probed([job(lab, check.source, "http", check.target, "/hostname", p["requests"],
                       until=[p["self"]])], judge)


def no_endpoints(lab: Lab, check: Check) -> Probed:
    def judge(s: list[dict[str, Any]]) -> Outcome:
        # REJECT answers at once; a missing rule would give "no route" (the unreachable
        # service range) or a timeout, never a refusal.
        refused = s[0]["ok"] == 0 and "connection refused" in s[0]["errors"]
        return Outcome(refused, f"{_summary(s[0])} after {float(s[0]['ms_max']):.0f} ms")

    return Probed([job(lab, check.source, "tcp", check.target)], judge)


def nodeport(lab: Lab, check: Check) -> Probed:
    p = check.params
    if p["drop"]:
        return dropped(lab, check)
    node = p["node"]
    allowed = {p["client_ip"]} if p["policy"] == "Local" else {node["ip"], node["gateway"],
                                                               node["vtep"]}
    backends = set(p["backends"])
    jobs = [job(lab, check.source, "http", check.target, "/hostname", p["requests"],
                until=backends),
            job(lab, check.source, "http", check.target, "/clientip", p["draws"])]

    def judge(s: list[dict[str, Any]]) -> Outcome:
        draws, peers = s
        seen = _ips(peers)
        ok = (_all_ok(draws) and _answer_set(draws) == backends and _all_ok(peers)
              and bool(seen) and seen <= allowed)
        text = f"{_summary(draws)}; backend saw {', '.join(sorted(seen)) or 'nothing'}"
        if peers["errors"]:
            text += f"; errors: {'; '.join(sorted(peers['errors']))}"
        return Outcome(ok, text)

    return Probed(jobs, judge)


PROBED: dict[str, Callable[[Lab, Check], Probed]] = {
    "pod-to-pod": pod_to_pod,
    "clusterip": clusterip,
    "clusterip-udp": clusterip_udp,
    "affinity": affinity,
    "hairpin": hairpin,
    "no-endpoints": no_endpoints,
    "nodeport": nodeport,
}


# ---- checks with commands of their own


def _hex(ip: str) -> str:
    return "0x" + "".join(f"{int(octet):02x}" for octet in ip.split("."))


def wire(lab: Lab, check: Check) -> Outcome:
    p = check.params
    src_pod, src_ip, dst_ip = check.source, lab.pod_ip[check.source], lab.pod_ip[check.target]
    if p["backend"] == "vxlan":
        # This very ping inside the VXLAN packet: inner IPv4 at UDP payload offset
        # 8 (UDP) + 8 (VXLAN) + 14 (inner Ethernet), so other checks' traffic between the
        # same nodes, running at the same time, cannot stand in for it.
        inner = 8 + 8 + 14
        capture = (f"udp dst port {p['port']} and src host {p['src_ip']} and dst host "
                   f"{p['dst_ip']} and udp[{inner + 9}:1] = 1 and "
                   f"udp[{inner + 12}:4] = {_hex(src_ip)} and udp[{inner + 16}:4] = {_hex(dst_ip)}")
    else:
        capture = f"icmp and src host {src_ip} and dst host {dst_ip}"
    # Ping only once tcpdump says it listens (its filter is set by then): no race with a
    # slow start on a busy machine. Every wait is bounded.
    # After the ping, tcpdump gets 5 s more to report what it holds (it exits at once when
    # it has the packet).
    script = (f"f=$(mktemp); timeout 15 tcpdump -l -nn -c 1 -i eth0 {shlex.quote(capture)} "
              f"2>$f & t=$!; i=0; while ! grep -q 'listening on' $f && [ $i -lt 100 ]; do "
              f"sleep 0.1; i=$((i+1)); done; ip netns exec {shlex.quote(src_pod)} ping -c 2 -W 3 "
              f"{dst_ip} >/dev/null; i=0; while kill -0 $t 2>/dev/null && [ $i -lt 50 ]; do "
              f"sleep 0.1; i=$((i+1)); done; kill $t 2>/dev/null; wait; rm -f $f")
    result = lab.host(p["capture_node"]).run(f"sh -c {shlex.quote(script)}")
    line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
    return Outcome(bool(line), line[:140] or "no packet captured")


def mtu(lab: Lab, check: Check) -> Outcome:
    size = check.params["payload"]
    result = lab.run(check.source, f"ping -M do -c 1 -W 5 -s {size} {lab.pod_ip[check.target]}")
    ok = result.rc == 0
    return Outcome(ok, f"{size}-byte DF ping: " + ("crossed" if ok else "did not cross"))


def conntrack(lab: Lab, check: Check) -> Outcome:
    """The DNAT of this very request: the backend reports our source port (/clientip),
    and the node's conntrack table must hold that flow with a backend as its reply."""
    vip, port = check.target.rsplit(":", 1)
    results = lab.probe(check.source, "http", check.target, "/clientip")
    answers = [str(r["answer"]) for r in results if r.get("ok")]
    if not answers:
        return Outcome(False, "the request itself failed: "
                       + "; ".join(str(r.get("error")) for r in results))
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


OWN: dict[str, Callable[[Lab, Check], Outcome]] = {
    "wire": wire,
    "mtu": mtu,
    "conntrack": conntrack,
}


def _failed(err: BaseException) -> Outcome:
    # A check that cannot run has failed, with the reason shown.
    return Outcome(False, f"{type(err).__name__}: {err}"[:200])


def run_check(lab: Lab, check: Check) -> Outcome:
    """One check on its own (its probes in one `docker exec`)."""
    return run_all(lab, [check], parallel=1)[check.id]


# ---- the whole run


def _batches(lab: Lab, checks: list[Check]) -> tuple[list[tuple[str, list[tuple[Check, Probed]]]],
                                                      dict[str, Outcome]]:
    """Probed checks grouped by the container their probes start in, BATCH_JOBS jobs a batch."""
    by_member: dict[str, list[tuple[Check, Probed]]] = {}
    broken: dict[str, Outcome] = {}
    for check in checks:
        try:
            probed = PROBED[check.kind](lab, check)
        except Exception as err:
            broken[check.id] = _failed(err)
            continue
        by_member.setdefault(lab.container_of(check.source), []).append((check, probed))
    batches = []
    for member, items in by_member.items():
        chunk: list[tuple[Check, Probed]] = []
        for item in items:
            if chunk and sum(len(p.jobs) for _, p in chunk) + len(item[1].jobs) > BATCH_JOBS:
                batches.append((member, chunk))
                chunk = []
            chunk.append(item)
        batches.append((member, chunk))
    # Longest first, so that the last to start are short (the run ends with the longest).
    batches.sort(key=lambda b: -_cost([j for _, probed in b[1] for j in probed.jobs]))
    return batches, broken


def run_all(lab: Lab, checks: list[Check], parallel: int = PARALLEL,
            timeout: float = DEFAULT_DEADLINE,
            done: Callable[[Check, Outcome], None] | None = None) -> dict[str, Outcome]:
    """Every check, at most `parallel` `docker exec`s at a time, within `timeout` seconds.

    `done(check, outcome)` is called as each result comes in (from worker threads).
    A check still running when the time is up fails as "not finished".
    """
    deadline = time.monotonic() + timeout
    outcomes: dict[str, Outcome] = {}
    lock = threading.Lock()

    def finish(check: Check, outcome: Outcome) -> None:
        with lock:
            if check.id in outcomes:
                return
            outcomes[check.id] = outcome
        if done is not None:
            done(check, outcome)

    def run_batch(member: str, items: list[tuple[Check, Probed]]) -> None:
        if time.monotonic() >= deadline:
            for check, _ in items:
                finish(check, Outcome(False, f"not run: the {timeout:.0f} s timeout was reached"))
            return
        jobs = [j for _, probed in items for j in probed.jobs]
        try:
            summaries = lab.batch(member, jobs, deadline)
        except Exception as err:
            for check, _ in items:
                finish(check, _failed(err))
            return
        at = 0
        for check, probed in items:
            mine = summaries[at:at + len(probed.jobs)]
            at += len(probed.jobs)
            try:
                finish(check, probed.judge(mine))
            except Exception as err:
                finish(check, _failed(err))

    def run_own(check: Check) -> None:
        if time.monotonic() >= deadline:
            finish(check, Outcome(False, f"not run: the {timeout:.0f} s timeout was reached"))
            return
        try:
            finish(check, OWN[check.kind](lab, check))
        except Exception as err:
            finish(check, _failed(err))

    own = [c for c in checks if c.kind in OWN]
    batches, broken = _batches(lab, [c for c in checks if c.kind not in OWN])
    for check in checks:
        if check.id in broken:
            finish(check, broken[check.id])
        elif check.kind not in OWN and check.kind not in PROBED:
            finish(check, Outcome(False, f"no runner for check kind {check.kind}"))
    pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="kgen-check")
    try:
        # The checks with commands of their own take longest (a capture): they go first.
        futures: set[Future[None]] = {pool.submit(run_own, c) for c in own}
        futures |= {pool.submit(run_batch, member, items) for member, items in batches}
        while futures:
            # Batches end by their own deadline (node side, then coreutils timeout); the
            # grace here covers a `docker exec` that hangs beyond that.
            left = deadline + 10 - time.monotonic()
            if left <= 0:
                break
            _, futures = wait(futures, timeout=left, return_when=FIRST_COMPLETED)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    for check in checks:
        finish(check, Outcome(False, f"not finished: the {timeout:.0f} s timeout was reached"))
    return outcomes
