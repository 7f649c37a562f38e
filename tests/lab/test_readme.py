"""Issue 5: the README walkthrough, run as a newcomer runs it, on a live demo lab.

Every `$ ` command of the walkthrough runs in a shell (with `kgen` on PATH) and
its output must equal the README's, once both are stripped of what the kernel
picks anew each run (ephemeral ports, timestamps, MACs of veths, ...). Where
the README shows one draw of a random choice (which ClusterIP backend), the
other draws the text names are accepted too, and nothing else.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.lab.conftest import KGEN, RunningLab

README = ROOT / "README.md"

# What varies from run to run, for every command.
VARIES = [
    (r"\b\d\d:\d\d:\d\d\.\d{6}\b", "TIME"),                   # tcpdump timestamps
    (r"fe80::[0-9a-f:]+/64", "fe80::LL/64"),                  # link-local from a random MAC
    (r"@if\d+", "@ifN"),                                      # peer interface index
    (r"^\d+: veth[0-9a-f]+@", "N: vethX@"),                   # veth names are random
    (r"time=[\d.]+ ms", "time=T ms"),                         # ping round trip
    (r"time \d+ms$", "time Tms"),                              # ping's total time
    (r"= [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms", "= RTT ms"),           # ping's rtt summary
    (r"\bid \d+,", "id N,"),                                  # ICMP echo id
    (r"(\d+\.\d+\.\d+\.\d+)\.\d+ >", r"\1.PORT >"),           # VXLAN source port (flow hash)
    (r"^(\d+\.\d+\.\d+\.\d+):\d+$", r"\1:PORT"),              # /clientip: the peer's port
    (r"port=\d{5}\b", "port=EPHEMERAL"),                      # conntrack client ports
    (r"^(tcp\s+6\s+)\d+", r"\1TIMEOUT"),                      # conntrack timer
    (r"\(id: \d+\)", "(id: N)"),                                # netns ids: pods are set up in parallel
]

# What else varies in a `kgen trace`: the source port it picks, the ports the kernel picks
# (masquerade, the VXLAN source port), veth names and the round trip.
TRACE_VARIES = [
    (r"source port \d+", "source port N"),
    (r":(?!(?:80|8080|8081|4789|30080|30081)\b)\d+\b", ":PORT"),
    (r"\b([sd]port)=(?!(?:80|8080|8081|30080|30081)\b)\d+", r"\1=PORT"),
    (r"\bveth[0-9a-f]{8}\b", "vethX"),
    (r" in [\d.]+ ms$", " in T ms"),
]

# A trace through a service with one backend on node-1 and one on node-2 follows either.
BACKEND_DRAW = [
    (r"\bpod-[23]\b", "BACKEND"),
    (r"\bnode-[12]\b", "BACKEND-NODE"),
    (r"\b10\.244\.[12]\.", "10.244.B."),
    (r"\b(\d+\.\d+\.\d+)\.[34]\b", r"\1.BACKEND-NODE-IP"),
    (r"KUBE-SEP-[A-Z0-9]{16}", "KUBE-SEP-X"),
    (r"endpoint [12] of 2 \([^)]*\)", "endpoint N of 2 (DRAW)"),
]

# Random draws the README text explains: command substring -> [(pattern, stand-in)].
DRAWS = {
    "curl -s 10.96.0.11/hostname": [(r"^pod-[23]$", "a web backend")],
    "conntrack -L": [(r"src=10\.244\.[12]\.2 dst=10\.244\.0\.2", "src=BACKEND dst=10.244.0.2")],
    # node-1 SNATs to its bridge address for its own backend, to its VTEP for node-2's.
    "172.31.0.3:30080/clientip": [(r"^10\.244\.1\.[01]:", "node-1:")],
    "kgen trace pod-0 web": BACKEND_DRAW,
    "kgen trace client-0 node-0 --port 30080": BACKEND_DRAW,
}

# Listings in the kernel's hash order, which differs between runs: compared as sets of lines.
# `ip netns list` too: pods are set up in parallel, so /run/netns lists them in no set order.
ORDERLESS = ("bridge fdb show", "ip neigh show", "ip netns list")


def walkthrough_steps() -> list[tuple[str, str]]:
    """(command, shown output) for every `$ ` line of the walkthrough section."""
    text = README.read_text()
    section = text[text.index("## Walkthrough"):text.index("## Commands")]
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```\n(.*?)^```", section, re.S | re.M):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
    return [(cmd, "\n".join(shown).strip("\n")) for cmd, shown in steps]


# A trace to a name looks it up first: kube-proxy draws one of the DNS pods, on the
# pod's own node (bridged) or across the overlay, so the lookup's hops differ in number
# and kind between runs. What does not vary is compared: the names asked, the answer.
DNS_DRAW = [(r"\bcoredns-\d+ \(10\.244\.\d+\.\d+:(?:53|PORT)\)", "a DNS pod")]


def without_lookup_hops(lines: list[str]) -> list[str]:
    """A trace's lines without the DNS query's own hops (from `query` to `answer: `)."""
    out, skipping = [], False
    for line in lines:
        if line == "query":
            skipping = True
        elif line.startswith("answer: "):
            skipping = False
        if not skipping:
            out.append(line)
    return out


def normalise(command: str, output: str) -> str:
    lines = []
    # A trace's own masks first: its ports are any width (a masqueraded port may be
    # short), which the generic 5-digit ephemeral-port mask would only half catch.
    masks = (TRACE_VARIES + DNS_DRAW + VARIES) if "kgen trace" in command else VARIES
    shown = output.strip("\n").splitlines()
    for line in without_lookup_hops(shown) if "kgen trace" in command else shown:
        for pattern, stand_in in masks:
            line = re.sub(pattern, stand_in, line)
        for key, draws in DRAWS.items():
            if key in command:
                for pattern, stand_in in draws:
                    line = re.sub(pattern, stand_in, line)
        lines.append(line.rstrip())
    if any(key in command for key in ORDERLESS):
        lines.sort()
    return "\n".join(lines)


STEPS = walkthrough_steps()


def test_the_walkthrough_reaches_the_nodeport_section() -> None:
    commands = [cmd for cmd, _ in STEPS]
    assert len(commands) >= 25
    assert any("30081/clientip" in cmd for cmd in commands)


@pytest.fixture(scope="module")
def walkthrough(demo: RunningLab) -> RunningLab:
    """The demo, where the walkthrough's commands (which take no -l) mean it: a lab renamed
    by KGEN_TEST_LAB_PREFIX is no built-in lab, so its file is that directory's ./lab.yaml."""
    if demo.name != "demo":
        (demo.dir / "lab.yaml").write_text(demo.lab_file.read_text())
    return demo


@pytest.mark.parametrize("command,shown", STEPS, ids=[cmd[:60] for cmd, _ in STEPS])
def test_readme_command_gives_what_it_shows(command: str, shown: str,
                                            walkthrough: RunningLab) -> None:
    demo = walkthrough
    node_ip = demo.status()["nodes"][0]["ip"]
    prefix = node_ip.rsplit(".", 1)[0] + "."  # the README ran on 172.31.0.0/24
    command, shown = command.replace("172.31.0.", prefix), shown.replace("172.31.0.", prefix)
    env = {**os.environ, "PATH": f"{Path(KGEN[0]).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", command], cwd=demo.dir, env=env, capture_output=True,
                            text=True, timeout=60)
    # The README's lab is `demo`; a prefixed one names its containers kgen-<prefix>demo-...
    output = re.sub(rf"\b{re.escape(demo.name)}\b", "demo", result.stdout)
    assert normalise(command, output) == normalise(command, shown), result.stderr
