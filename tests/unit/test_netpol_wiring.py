"""NetworkPolicy from the lab file to a node's kernel: the lab file takes `networkPolicies`
(each problem one line with its path), cluster.json carries them normalised with what
nodes need, and the node's controller writes its plan with the real renderers, only
when its input changed, keeping FORWARD's jump first."""

from __future__ import annotations

import ipaddress
import subprocess
import threading
from typing import Any

import pytest

from generator.cluster.build import build_state
from generator.lab import pod_ports
from generator.lab.errors import LabError
from generator.lab.model import parse_lab
from generator.node.netpol import iptables, nftables, spec
from generator.node.netpol.plan import node_plan
from generator.node.netpol.policy import parse_cluster
from generator.node.netpol_sync import NetpolSync

NET = ipaddress.IPv4Network("172.29.0.0/24")


def lab_doc(**extra: Any) -> dict[str, Any]:
    return {"name": "nw-u", "nodes": ["node-0", "node-1"],
            "namespaces": [{"name": "shop", "labels": {"team": "a"}}],
            "pods": [{"name": "web", "node": "node-0", "labels": {"app": "web"},
                      "containers": [{"name": "web"}, {"name": "side", "command": ["sleep", "1"],
                                                       "ports": [{"name": "metrics",
                                                                  "containerPort": 9090}]}]},
                     {"name": "db", "node": "node-1", "namespace": "shop", "labels": {"app": "db"}}],
            **extra}


DENY_SHOP = {"metadata": {"name": "deny", "namespace": "shop"}, "spec": {"podSelector": {}}}
ALLOW_METRICS = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "metrics"},
                 "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                          "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}],
                                       "ports": [{"port": "metrics"}, {"port": 8081,
                                                                       "protocol": "UDP"}]}],
                          "egress": [{"to": [{"ipBlock": {"cidr": "10.244.0.0/16"}}]}]}}


def problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(LabError) as caught:
        parse_lab(doc, "lab.yaml")
    return caught.value.lines()


def test_a_lab_file_with_policies_and_named_ports_loads() -> None:
    lab = parse_lab(lab_doc(networkPolicies=[DENY_SHOP, ALLOW_METRICS]))
    assert [p["metadata"]["name"] for p in lab.network_policies] == ["deny", "metrics"]
    assert lab.pods[0].containers[1].ports[0].name == "metrics"


def test_every_policy_and_port_problem_is_one_line_with_its_path() -> None:
    bad_policy = {"metadata": {"name": "x", "namespace": "nowhere"},
                  "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 9}]}]}}
    doc = lab_doc(networkPolicies=[bad_policy, DENY_SHOP, DENY_SHOP, "p"])
    doc["pods"][0]["containers"][1]["ports"] += [{"name": "udp", "containerPort": 1},
                                                 {"name": "a--b", "containerPort": 2}]
    assert problems(doc) == [
        "lab.yaml: networkPolicies[3]: expected a mapping, got 'p'",
        "lab.yaml: networkPolicies[0].spec.ingress[0].ports[0].endPort: may not be specified "
        "when port is non-numeric",
        "lab.yaml: networkPolicies[2].metadata.name: shop/deny already exists (networkPolicies[1])",
        "lab.yaml: networkPolicies[0].metadata.namespace: namespace 'nowhere' does not exist "
        "(list it under `namespaces`, or put a pod or service in it)",
        "lab.yaml: pods[0].containers[1].ports[1].name: duplicate port name 'udp' in the pod "
        "(already declared by the test server of container 'web')",
        "lab.yaml: pods[0].containers[1].ports[2].name: 'a--b' must not contain consecutive hyphens",
    ]


def test_an_unknown_key_in_a_container_port_is_refused_by_the_schema() -> None:
    doc = lab_doc()
    doc["pods"][0]["containers"][1]["ports"][0]["hostPort"] = 1
    assert problems(doc) == ["lab.yaml: pods[0].containers[1].ports[0].hostPort: unknown key "
                             "(known keys: containerPort, name, protocol)"]


def test_both_sides_declare_the_same_test_server_ports() -> None:
    assert pod_ports.TEST_SERVER_PORTS == spec.TEST_SERVER_PORTS


def cluster(policies: list[dict[str, Any]]) -> Any:
    return build_state(parse_lab(lab_doc(networkPolicies=policies)), NET)


def test_cluster_json_carries_policies_with_the_api_servers_defaults() -> None:
    state = cluster([DENY_SHOP, ALLOW_METRICS])
    deny, metrics = state["networkPolicies"]
    assert deny == {"metadata": {"name": "deny", "namespace": "shop"},
                    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    assert metrics["metadata"] == {"name": "metrics", "namespace": "default"}
    assert metrics["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert metrics["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"},
                                                      {"port": 8081, "protocol": "UDP"}]
    assert "networkPolicies" not in build_state(parse_lab(lab_doc()), NET)


def test_the_policy_input_has_namespaces_labels_and_named_ports() -> None:
    doc = spec.netpol_input(cluster([ALLOW_METRICS]))
    web = next(p for p in doc["pods"] if p["name"] == "web")
    assert web["ports"] == [*spec.TEST_SERVER_PORTS,
                            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert {"name": "shop", "labels": {"team": "a", "kubernetes.io/metadata.name": "shop"}} \
        in doc["namespaces"]
    # the named port resolves on the pod: web's metrics is 9090
    plan = node_plan(parse_cluster(doc), "node-0")
    assert "-d 10.244.0.2/32 -p tcp -m tcp --dport 9090" in iptables.render(plan)


def test_the_digest_follows_policies_and_pod_labels_only() -> None:
    base = cluster([DENY_SHOP])
    same = dict(base, services=[{"name": "other"}], generation="x")
    relabelled = cluster([DENY_SHOP])
    relabelled["pods"][0]["labels"] = {"app": "api"}
    digests = {spec.netpol_digest(c) for c in (base, same)}
    assert len(digests) == 1
    assert spec.netpol_digest(relabelled) not in digests
    assert spec.netpol_digest(cluster([])) not in digests


class Kernel:
    """A fake runner recording every command; iptables -S FORWARD answers `forward`."""

    def __init__(self, forward: str = "-P FORWARD ACCEPT\n", fail: str = "") -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.forward, self.fail = forward, fail

    def __call__(self, argv: list[str], input: str | None = None) -> Any:
        self.calls.append((argv, input))
        out = self.forward if argv[-2:] == ["-S", "FORWARD"] else ""
        code = 1 if self.fail and self.fail in argv[0] else 0
        return subprocess.CompletedProcess(argv, code, out, "refused" if code else "")

    def commands(self) -> list[str]:
        return [" ".join(argv[:3]) for argv, _ in self.calls]


def test_iptables_mode_writes_changed_chains_then_puts_its_jump_first() -> None:
    kernel = Kernel()
    sync = NetpolSync("node-1", "iptables", threading.Lock(), runner=kernel)
    state = cluster([DENY_SHOP])
    sync.update(state)
    assert sync.sync_once() and sync.status() == {"digest": spec.netpol_digest(state), "error": None}
    assert kernel.commands() == ["iptables-save -t filter", "iptables-restore -w --noflush",
                                 "iptables -w -t", "iptables -w -t"]
    restore = kernel.calls[1][1]
    assert restore is not None and "isolated by shop/deny" in restore
    assert kernel.calls[3][0][4:7] == ["-I", "FORWARD", "1"]
    # the same input again: nothing written; a kube-proxy full sync: only the jump is checked
    kernel.calls.clear()
    sync.update(state)
    assert sync.sync_once() and kernel.calls == []
    kernel.forward = f"-P FORWARD ACCEPT\n{iptables.JUMP_RULE}\n-A FORWARD -j KUBE-FORWARD\n"
    sync.proxy_synced(True)
    assert sync.sync_once() and kernel.commands() == ["iptables -w -t"]


def test_nftables_mode_replaces_its_table_whole() -> None:
    kernel = Kernel()
    sync = NetpolSync("node-1", "nftables", threading.Lock(), runner=kernel)
    state = cluster([DENY_SHOP])
    sync.update(state)
    sync.proxy_synced(True)  # nothing of kube-proxy's to keep an order with in nftables mode
    assert sync.sync_once()
    plan = node_plan(parse_cluster(spec.netpol_input(state)), "node-1")
    assert kernel.calls == [(["nft", "-f", "-"], nftables.render(plan))]


def test_a_refused_write_is_published_and_the_kernel_read_again() -> None:
    kernel = Kernel(fail="iptables-restore")
    sync = NetpolSync("node-1", "iptables", threading.Lock(), runner=kernel)
    sync.update(cluster([DENY_SHOP]))
    assert not sync.sync_once()
    assert sync.status() == {"digest": "", "error": "iptables-restore: refused"}
    kernel.fail, kernel.calls = "", []
    assert sync.sync_once() and sync.status()["error"] is None
    assert kernel.commands()[0] == "iptables-save -t filter"


def test_without_policies_nothing_is_in_the_path_and_what_was_there_goes() -> None:
    kernel = Kernel()
    sync = NetpolSync("node-1", "iptables", threading.Lock(), runner=kernel)
    sync.update(cluster([]))
    sync.proxy_synced(True)
    assert sync.sync_once() and kernel.commands() == ["iptables-save -t filter"]  # no jump
    sync.update(cluster([DENY_SHOP]))
    assert sync.sync_once()
    kernel.calls.clear()
    kernel.forward = f"-P FORWARD ACCEPT\n{iptables.JUMP_RULE}\n"
    sync.update(cluster([]))
    assert sync.sync_once() and sync.status()["digest"] == spec.netpol_digest(cluster([]))
    assert kernel.commands() == ["iptables -w -t", "iptables -w -t", "iptables-restore -w --noflush"]
    assert kernel.calls[1][0][4:6] == ["-D", "FORWARD"]
    removal = kernel.calls[2][1]
    assert removal is not None and f"-X {iptables.TOP}\n" in removal and "-X KUBE-POD-FW-" in removal

    kernel = Kernel()
    sync = NetpolSync("node-1", "nftables", threading.Lock(), runner=kernel)
    sync.update(cluster([]))
    assert sync.sync_once()
    assert kernel.calls == [(["nft", "-f", "-"], "table ip kgen-netpol {}\n"
                                                 "delete table ip kgen-netpol\n")]
