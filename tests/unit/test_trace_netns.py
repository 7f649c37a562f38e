"""The node side of `kgen trace` on this machine's kernel, in throw-away namespaces.

Two network namespaces joined by a veth pair stand in for a node and its
peer. The real helper (`python3 -m generator.node.trace`) runs in the first,
in both proxy modes: iptables (TRACE rules read with xtables-monitor) and
nftables (a table of its own read with `nft monitor trace`). It must arm, see
its own echo request and reply, and leave nothing behind: not on `stop`, not
when its input ends (kgen gone), not on SIGTERM, and it sweeps the rules of a
helper that was killed outright.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from generator.node.documents import TraceProbeResult, TraceReport
from generator.trace.parse import parse_nft, parse_xtables
from tests.conftest import ROOT, need_root_netns
from tests.unit.typed import problems

pytestmark = pytest.mark.netns

ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
HERE, PEER = "10.250.0.1", "10.250.0.2"  # private, and only between the two namespaces
ECHO_ID = 4242


@pytest.fixture
def pair() -> Iterator[str]:
    need_root_netns()
    tag = f"kgtr{os.getpid() % 100000}"
    a, b = f"{tag}a", f"{tag}b"
    steps = [["ip", "netns", "add", a], ["ip", "netns", "add", b],
             ["ip", "link", "add", f"{tag}x", "type", "veth", "peer", "name", f"{tag}y"],
             ["ip", "link", "set", f"{tag}x", "netns", a], ["ip", "link", "set", f"{tag}y", "netns", b],
             ["ip", "-n", a, "addr", "add", f"{HERE}/24", "dev", f"{tag}x"],
             ["ip", "-n", b, "addr", "add", f"{PEER}/24", "dev", f"{tag}y"],
             ["ip", "-n", a, "link", "set", f"{tag}x", "up"], ["ip", "-n", b, "link", "set", f"{tag}y", "up"]]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
        yield a
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def needs(mode: str) -> None:
    tool = "nft" if mode == "nftables" else "xtables-monitor"
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed on this machine")


def plan(mode: str, deadline: float = 20) -> dict[str, Any]:
    return {"id": "c0ffee01", "mode": mode, "member": "here", "node": False, "proto": "icmp",
            "deadline": int(time.time() + deadline), "capture": None,
            "matches": [{"proto": "icmp", "src": HERE, "icmp_type": "echo-request", "icmp_id": ECHO_ID},
                        {"proto": "icmp", "dst": HERE, "icmp_type": "echo-reply", "icmp_id": ECHO_ID}],
            "probe": {"mode": "icmp", "host": PEER, "port": 0, "arg": "", "timeout": 2,
                      "sport": ECHO_ID, "netns": None}}


def helper(ns: str, doc: dict[str, Any]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "generator.node.trace"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(doc) + "\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline()) == {"event": "armed"}
    return proc


def say(proc: subprocess.Popen[str], command: str) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    return dict(json.loads(proc.stdout.readline()))


def state(ns: str) -> str:
    """Every table of the namespace, and the raw table's rules as iptables sees them."""
    tables = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c",
                             "nft list tables 2>/dev/null; iptables-save 2>/dev/null | grep -E "
                             "'^[*]|kgen-trace'; true"], capture_output=True, text=True, env=ENV)
    return tables.stdout.strip()


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_the_helper_sees_its_echo_and_its_reply_then_leaves_nothing(pair: str, mode: str) -> None:
    needs(mode)
    before = state(pair)
    proc = helper(pair, plan(mode))
    armed = state(pair)
    assert armed != before  # something was armed
    probe = say(proc, "go")["result"]
    report = say(proc, "stop")
    proc.wait(10)
    assert probe["ok"] and probe["answer"] == PEER
    assert report["error"] is None and state(pair) == before
    # What the real helper sent has exactly the shape of its types (generator/node/documents.py).
    assert problems(probe, TraceProbeResult) == [] and problems(report, TraceReport) == []
    parse = parse_nft if mode == "nftables" else parse_xtables
    records = parse("here", report["lines"])
    out = [r for r in records if r.hook == "OUTPUT" and r.src == HERE and r.dst == PEER]
    back = [r for r in records if r.hook == "PREROUTING" and r.src == PEER and r.dst == HERE]
    assert out and back, report["lines"]
    assert out[0].ip_id is not None and out[0].oif and back[0].iif


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
@pytest.mark.parametrize("how", ["end-of-input", "sigterm"])
def test_an_interrupted_helper_disarms(pair: str, mode: str, how: str) -> None:
    needs(mode)
    before = state(pair)
    proc = helper(pair, plan(mode))
    assert state(pair) != before
    assert proc.stdin is not None
    if how == "end-of-input":
        proc.stdin.close()  # what a helper sees when kgen dies
    else:
        proc.send_signal(signal.SIGTERM)  # reaches `ip netns exec`, which execs python
    proc.wait(10)
    assert state(pair) == before


def test_rules_past_their_deadline_are_swept(pair: str) -> None:
    needs("iptables")
    before = state(pair)
    stale = ["ip", "netns", "exec", pair, "iptables", "-t", "raw", "-A", "OUTPUT", "-p", "udp",
             "--dport", "9", "-m", "comment", "--comment", "kgen-trace:dead0000:1000", "-j", "TRACE"]
    subprocess.run(stale, check=True, env=ENV)
    proc = helper(pair, plan("iptables"))
    assert "dead0000" not in state(pair)  # swept before arming its own
    say(proc, "stop")
    proc.wait(10)
    assert state(pair) == before
