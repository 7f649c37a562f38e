"""Issue 24: NetworkPolicy enforced on real labs, in both proxy modes.

One lab per proxy mode holds the Kubernetes network-policy e2e suite's model:
namespaces x, y and z, pods a, b and c in each (label `pod: <name>`, spread over two
nodes), each serving 80 and 81 over TCP and UDP with kgen's test server, on the
named ports `serve-80-tcp`, `serve-80-udp`, `serve-81-tcp`, `serve-81-udp`. Each
scenario's stages reach the running lab with `kgen apply` (policies, namespace and
pod labels); after each apply every pod probes every other pod (HTTP over TCP, a
datagram over UDP, from inside its network namespace) and the truth table must be
the e2e suite's (loopback aside, as the suite leaves it). No probe is retried: a
stage is probed once, right after `kgen apply` returned.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.node.documents import ProbeJob, encode_probe_jobs
from tests.lab.conftest import RunningLab, bring_up
from tests.unit.netpol_model import NAMESPACES, POD_NAMES, keys, pod_ip
from tests.unit.netpol_scenarios import SCENARIOS, Stage

MODES = {"iptables": "172.29.0.0/24", "nftables": "172.29.1.0/24"}  # each lab's node network
PROBE_TIMEOUT = 2.0  # an allowed answer takes milliseconds on a lab; a dropped one never comes
BASELINE_WAIT = 60.0  # the servers' first listen, after `kgen up` (a readiness gate, not a retry)

ON_LAB = [
    "should support a 'default-deny-ingress' policy",
    "should enforce policy based on PodSelector and NamespaceSelector",
    "should allow ingress access from namespace on one named port",
    "should allow egress access on one named port",
    "should support denying of egress traffic on the client side (even if the server explicitly "
    "allows this traffic)",
    "should allow egress access to server in CIDR block",
    "should enforce except clause while egress access to server in CIDR block",
    "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
    "should allow ingress access from updated pod",
    "should allow ingress access from updated namespace",
    "should stop enforcing policies after they are deleted",
    "UDP: should enforce policy based on Ports",
    "UDP: should enforce policy to allow traffic only from a pod in a different namespace based "
    "on PodSelector and NamespaceSelector",
]


def pod_name(key: str) -> str:
    return key.replace("/", "-")  # pod names are unique in a lab: x/a is pod x-a


def node_of(key: str) -> str:
    """x/a node-0, x/b node-1, x/c node-0, y/a node-1, ...: same-node and cross-node pairs."""
    ns, name = key.split("/")
    return f"node-{(NAMESPACES.index(ns) + POD_NAMES.index(name)) % 2}"


def server(key: str, port: int) -> dict[str, Any]:
    return {"name": f"serve-{port}",
            "command": ["python3", "-m", "generator.node.testserver", "--name", key,
                        "--http-port", str(port), "--udp-port", str(port)],
            "ports": [{"name": f"serve-{port}-{proto.lower()}", "containerPort": port,
                       "protocol": proto} for proto in ("TCP", "UDP")]}


def lab_doc(mode: str, stage: Stage | None = None, ips: dict[str, str] | None = None,
            ) -> dict[str, Any]:
    stage = stage or Stage([], [])
    return {
        "name": f"np{mode[0]}", "nodes": ["node-0", "node-1"], "proxyMode": mode,
        "nodeNetwork": MODES[mode], "dns": {"enabled": False},
        "namespaces": [{"name": ns, "labels": stage.ns_labels.get(ns, {})} for ns in NAMESPACES],
        "pods": [{"name": pod_name(key), "namespace": key.split("/")[0], "node": node_of(key),
                  "labels": {"pod": key.split("/")[1], **stage.pod_labels.get(key, {})},
                  "containers": [server(key, 80), server(key, 81)]} for key in keys()],
        "networkPolicies": with_lab_ips(stage.policies, ips or {}),
    }


def with_lab_ips(policies: list[dict[str, Any]], ips: dict[str, str]) -> list[dict[str, Any]]:
    """The scenarios' ipBlocks name the model's addresses (10.251.x.y): the lab's instead."""
    model = {pod_ip(*key.split("/")): ip for key, ip in ips.items()}
    text = re.sub(r"10\.251\.\d+\.\d+", lambda m: model[m.group(0)], json.dumps(policies))
    return list(json.loads(text))


@dataclass
class NetpolLab:
    lab: RunningLab
    mode: str
    ips: dict[str, str]  # "x/a" -> address
    containers: dict[str, str]  # node -> container

    def apply(self, stage: Stage) -> float:
        """The stage's lab file applied; seconds `kgen apply` took."""
        self.lab.lab_file.write_text(yaml.safe_dump(dict(lab_doc(self.mode, stage, self.ips),
                                                         name=self.lab.name)))
        started = time.monotonic()
        self.lab.kgen("apply")
        return time.monotonic() - started

    def probe(self, port: int, protocol: str) -> dict[tuple[str, str], bool]:
        """Every pod to every other pod, once each, all at once (one batch per node)."""
        runs = {}
        for node, container in self.containers.items():
            pairs = [(s, d) for s in keys() if node_of(s) == node for d in keys() if d != s]
            jobs: list[ProbeJob] = [
                {"netns": pod_name(s), "mode": "http" if protocol == "TCP" else "udp",
                 "host": self.ips[d], "port": port,
                 "arg": "/hostname" if protocol == "TCP" else "hostname", "count": 1,
                 "timeout": PROBE_TIMEOUT, "until": None, "fail_fast": True, "streams": 1}
                for s, d in pairs]
            argv = ["docker", "exec", container, "python3", "-m", "generator.node.probe", "batch",
                    encode_probe_jobs(jobs), "--deadline", "60", "--workers", "64"]
            runs[node] = (pairs, subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
        truth = {}
        for pairs, run in runs.values():
            out, _ = run.communicate(timeout=120)
            assert run.returncode == 0, out
            for (src, dst), summary in zip(pairs, json.loads(out), strict=True):
                assert set(summary["answers"]) <= {dst}, f"{src} -> {dst}: {summary['answers']}"
                truth[(src, dst)] = summary["ok"] == 1
        return truth


@pytest.fixture(scope="module", params=sorted(MODES))
def netpol_lab(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetpolLab]:
    mode = request.param
    workdir = tmp_path_factory.mktemp(f"netpol-{mode}")
    (workdir / f"np{mode[0]}.yaml").write_text(yaml.safe_dump(lab_doc(mode)))
    for lab in bring_up(workdir / f"np{mode[0]}.yaml", workdir):
        status = lab.status()
        by_name = {p["name"]: p["ip"] for p in status["pods"]}
        found = NetpolLab(lab, mode, {k: by_name[pod_name(k)] for k in keys()},
                          {n["name"]: n["container"] for n in status["nodes"]})
        wait_until_every_server_listens(found)
        yield found


def wait_until_every_server_listens(lab: NetpolLab) -> None:
    """Pods whose containers have commands are Running once their processes run; the
    e2e suite too checks that everything reaches everything before its first policy."""
    deadline = time.monotonic() + BASELINE_WAIT
    while True:
        silent = [f"{s} -> {d} {port}/{proto}" for port in (80, 81) for proto in ("TCP", "UDP")
                  for (s, d), ok in lab.probe(port, proto).items() if not ok]
        if not silent:
            return
        assert time.monotonic() < deadline, f"not serving after {BASELINE_WAIT}s: {silent[:5]}"
        time.sleep(1)


def mismatches(got: dict[tuple[str, str], bool], want: dict[tuple[str, str], bool]) -> list[str]:
    return [f"{s} -> {d}: expected {'allowed' if want[(s, d)] else 'blocked'}"
            for (s, d) in sorted(want) if got[(s, d)] != want[(s, d)]]


def matrix(got: dict[tuple[str, str], bool]) -> str:
    """As the e2e suite prints its tables: rows from, columns to, `.` reached, `X` blocked."""
    rows = ["      " + " ".join(keys())]
    for src in keys():
        rows.append(f"{src:>5} " + " ".join(f"{'.' if got.get((src, d), True) else 'X':^3}"
                                           for d in keys()))
    return "\n".join(rows)


@pytest.mark.parametrize("name", ON_LAB)
def test_the_e2e_truth_tables_hold_on_a_real_lab(netpol_lab: NetpolLab, name: str) -> None:
    for number, stage in enumerate(SCENARIOS[name]):
        took = netpol_lab.apply(stage)
        for port, protocol, reach in stage.probes:
            got = netpol_lab.probe(port, protocol)
            wrong = mismatches(got, reach.without_loopback())
            print(f"[{netpol_lab.mode}] {name} stage {number} {port}/{protocol} "
                  f"(apply {took:.1f}s): {'match' if not wrong else 'MISMATCH'}\n{matrix(got)}")
            assert not wrong, f"stage {number}, {port}/{protocol}: " + "; ".join(wrong)
    netpol_lab.apply(Stage([], []))  # the next scenario starts from no policies


def resync_delays(lab: NetpolLab, cluster_file: Path, digest: str) -> dict[str, float]:
    """Seconds from cluster.json's replacement to each node's log line saying the policies
    of `digest` are in place (the host and the containers share one clock)."""
    written = cluster_file.stat().st_mtime
    delays = {}
    for node, container in lab.containers.items():
        log = subprocess.run(["docker", "exec", container, "grep", f"network policies {digest} in",
                              "/var/log/kgen/agent.log"], capture_output=True, text=True).stdout
        stamp = log.splitlines()[-1][:23]  # "2026-12-05 11:35:12,586"
        delays[node] = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() - written
    return delays


def test_a_policy_change_is_enforced_when_kgen_apply_returns(netpol_lab: NetpolLab) -> None:
    """Deny-all into x, then its deletion: each holds on the first probe after `apply`
    returned, and the agents' resync time (cluster.json to rules in place) is printed;
    with the policy gone no rule of ours is left in any node."""
    from generator.node.netpol.spec import netpol_digest

    cluster_file = netpol_lab.lab.dir / f"kgen-{netpol_lab.lab.name}" / "config" / "cluster.json"
    stages = SCENARIOS["should stop enforcing policies after they are deleted"]
    for stage in stages:
        took = netpol_lab.apply(stage)
        digest = netpol_digest(json.loads(cluster_file.read_text()))
        delays = resync_delays(netpol_lab, cluster_file, digest)
        got = netpol_lab.probe(80, "UDP")
        print(f"[{netpol_lab.mode}] {len(stage.policies)} policies: kgen apply {took:.2f}s, "
              "rules in place after cluster.json: "
              + ", ".join(f"{n} {d:.2f}s" for n, d in sorted(delays.items())))
        assert not mismatches(got, stage.probes[0][2].without_loopback())
        assert ours_in_kernel(netpol_lab) == {n: bool(stage.policies) for n in netpol_lab.containers}


def ours_in_kernel(lab: NetpolLab) -> dict[str, bool]:
    """Whether each node holds rules of ours: none at all in a lab without policies."""
    found = {}
    for node, container in lab.containers.items():
        if lab.mode == "nftables":
            listed = subprocess.run(["docker", "exec", container, "nft", "list", "table", "ip",
                                     "kgen-netpol"], capture_output=True, text=True)
            found[node] = listed.returncode == 0
        else:
            saved = subprocess.run(["docker", "exec", container, "iptables-save", "-t", "filter"],
                                   capture_output=True, text=True, check=True).stdout
            found[node] = "KUBE-ROUTER-FORWARD" in saved
    return found


CLIENT = """
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], 81, timeout=5)
for line in sys.stdin:
    conn.request("GET", "/clientip")
    print(conn.getresponse().read().decode(), flush=True)
"""


def test_an_allowed_established_connection_survives_an_apply(netpol_lab: NetpolLab) -> None:
    """y/b keeps one HTTP/1.1 connection to x/a:81 open while `kgen apply` replaces the
    rules (a second policy: new chains, or a new table, with the same verdict)."""
    stages = SCENARIOS["should enforce multiple, stacked policies with overlapping podSelectors"]
    netpol_lab.apply(stages[0])  # y may reach x/a on 81 only
    node = netpol_lab.containers[node_of("y/b")]
    client = subprocess.Popen(["docker", "exec", "-i", node, "ip", "netns", "exec", "y-b",
                               "python3", "-c", CLIENT, netpol_lab.ips["x/a"]],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert client.stdin is not None and client.stdout is not None
    try:
        client.stdin.write("1\n")
        client.stdin.flush()
        before = client.stdout.readline().strip()
        assert before.startswith(netpol_lab.ips["y/b"] + ":")
        netpol_lab.apply(stages[1])  # a second policy isolating x/a
        netpol_lab.apply(stages[0])  # and back: its chains go again
        client.stdin.write("2\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == before, "the same connection, still answered"
    finally:
        client.kill()
        client.wait()
    netpol_lab.apply(Stage([], []))
