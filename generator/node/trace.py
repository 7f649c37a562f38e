"""The node side of `kgen trace`: arm the kernel's netfilter trace for one flow,
read it, disarm it, and report what the kernel said.

`python3 -m generator.node.trace` reads a plan (one JSON line, a `TracePlan`
of generator.node.contract) on stdin, then commands, one per line: `go` runs
the plan's probe (on the trace's source), `stop` ends the trace. It answers
with JSON lines on stdout: `{"event": "armed"}`, `{"event": "probe",
"result": ...}`, then the `TraceReport`.

The rooms: trace_arm (the rules, added and removed under the node's lock),
trace_monitor (the kernel's trace events), trace_sniff (the flow's frames on
the underlay), trace_facts (routes, conntrack, bridge ports, nat chains, read
after disarming); this module is the command loop that holds them together.

Whatever happens (stop, end of stdin because the host went away, a signal,
the plan's deadline, an error) the rules are removed before exit.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import select
import signal
import sys
import time
from typing import cast

from generator.node import netns, trace_dns, trace_facts
from generator.node.documents import (
    Frame,
    TraceLookupAnswer,
    TracePlan,
    TraceProbe,
    TraceProbeResult,
    TraceReport,
    trace_report,
)
from generator.node.trace_arm import arm, disarm, sweep
from generator.node.trace_monitor import Monitor
from generator.node.trace_sniff import PROTO_NUMBERS, Sniffer

__all__ = ["main", "sweep", "trace"]

PLAN_TIMEOUT = 30.0  # seconds to wait for the plan line


class Stop(Exception):
    """A signal asked the helper to end (the rules still come off)."""


def run_probe(probe: TraceProbe) -> TraceProbeResult:
    """The probe of generator.node.probe, run in this process from the source's network
    namespace."""
    from generator.node import probe as prober

    before = trace_facts.backlog_drops()
    try:
        if probe["mode"] == "dns":
            result = run_lookup(probe)
        else:
            out = netns.run_in(probe["netns"], lambda: prober.attempt(
                probe["mode"], probe["host"], int(probe["port"]), probe["arg"],
                float(probe["timeout"]), int(probe["sport"])))
            result = {"ok": bool(out["ok"]), "answer": out.get("answer"),
                      "error": out.get("error"), "ms": float(out.get("ms") or 0),
                      "backlogDrops": 0}
    except Exception as err:
        result = {"ok": False, "answer": None, "error": f"{type(err).__name__}: {err}"[:300],
                  "ms": 0, "backlogDrops": 0}
    result["backlogDrops"] = trace_facts.backlog_drops() - before
    return result


def run_lookup(probe: TraceProbe) -> TraceProbeResult:
    """The source pod's DNS lookup of `arg`, from its own resolv.conf (trace_dns)."""
    from generator.node import probe as prober

    pod = probe["netns"] or ""
    conf = trace_dns.pod_resolver_file(pod).read_text() if pod else ""
    started = time.monotonic()
    try:
        found = netns.run_in(pod or None, lambda: trace_dns.lookup(
            conf, probe["arg"], int(probe["sport"]), float(probe["timeout"])))
    except OSError as err:
        return {"ok": False, "answer": None, "error": prober._error(err),
                "ms": round((time.monotonic() - started) * 1000, 2), "backlogDrops": 0}
    return {"ok": True, "answer": ",".join(cast(list[str], found["answers"])), "error": None,
            "ms": round((time.monotonic() - started) * 1000, 2), "backlogDrops": 0,
            "lookup": cast(TraceLookupAnswer, found)}


def emit(doc: object) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def _raise_stop(*_: object) -> None:
    raise Stop


_pending = bytearray()


def wait_command(deadline: float) -> str:
    """The next command on stdin (read unbuffered, so that select never sleeps on a line
    already read); "stop" at end of input or past the deadline."""
    while b"\n" not in _pending:
        left = deadline - time.time()
        if left <= 0:
            return "stop"
        ready, _, _ = select.select([0], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(0, 4096)
            if not chunk:
                return "stop"
            _pending.extend(chunk)
    line, _, rest = bytes(_pending).partition(b"\n")
    _pending[:] = rest
    return line.decode(errors="replace").strip() or "stop"


def serve(plan: TracePlan) -> None:
    """Answer commands until "stop" (or the end of input, or the deadline)."""
    while True:
        command = wait_command(plan["deadline"])
        if command == "go" and plan.get("probe"):
            probe = plan["probe"]
            assert probe is not None
            emit({"event": "probe", "result": run_probe(probe)})
        elif command == "stop":
            return


def watch(plan: TracePlan) -> tuple[str | None, list[str], list[Frame]]:
    """Arm, serve, disarm: (why it ended early or None, the monitor's lines, the frames)."""
    monitor = Monitor(plan["mode"]) if plan["matches"] else None
    sniffer = None
    armed = False
    error = None
    try:
        cap = plan.get("capture")
        if cap:
            sniffer = Sniffer(cap["iface"], cap["vxlan_port"], PROTO_NUMBERS[plan["proto"]],
                              set(cap["ports"]), cap["inside"])
        if monitor:
            monitor.wait_ready()
        armed = True
        arm(plan)
        emit({"event": "armed"})
        serve(plan)
        time.sleep(plan.get("linger", 0.05))  # the last events of a reply still in flight
    except Stop:
        error = "interrupted"
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
    finally:
        # Nothing may interrupt the clean-up: a second Ctrl-C or TERM waits until it is done.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if armed:
            disarm(plan)
        lines = monitor.stop() if monitor else []
        frames = sniffer.stop() if sniffer else []
    return error, lines, frames


def trace(plan: TracePlan) -> TraceReport:
    error, lines, frames = watch(plan)
    report = trace_report(plan["member"], error)
    report["lines"], report["frames"] = lines, frames
    node = bool(plan.get("node"))
    iptables = plan["mode"] == "iptables"
    # Each is a few short commands: all at once, so that a busy machine costs one wait.
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        routes = pool.submit(trace_facts.routes, lines)
        conntrack = pool.submit(trace_facts.conntrack, plan["proto"]) if plan["matches"] else None
        bridge = pool.submit(trace_facts.bridge_ports) if node else None
        nat = pool.submit(trace_facts.nat_chains) if node and iptables else None
        source = pool.submit(trace_facts.source_route, plan.get("probe"))
        report["routes"] = routes.result()
        report["conntrack"] = conntrack.result() if conntrack else []
        report["bridge"] = bridge.result() if bridge else None
        report["natChains"] = nat.result() if nat else []
        report["source"] = source.result()
    return report

def main() -> int:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    line = wait_command(time.time() + PLAN_TIMEOUT)
    try:
        plan = cast(TracePlan, json.loads(line))
    except ValueError:
        emit(trace_report("", "no plan on stdin"))
        return 2
    try:
        report = trace(plan)
    except Stop:
        with contextlib.suppress(Exception):
            disarm(plan)
        return 1
    emit(report)
    return 0 if report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
