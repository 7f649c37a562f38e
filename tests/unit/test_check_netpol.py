"""`kgen check`'s NetworkPolicy matrix: planned from the e2e suite's scenarios, judged, printed.

The lab here is the e2e suite's model (namespaces x, y, z; pods a, b, c in
each) as a kgen cluster: each pod runs the test server (8080/TCP, 8081/UDP)
and declares the suite's named ports on a sidecar, the suite's port 80 being
the test server's port of that protocol. The planned rows must give exactly
the suite's truth table (loopback aside, as in the suite).
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from generator.checks import matrix
from generator.checks.base import LabView
from generator.checks.kinds.netpol import NetPol, probed_ports
from generator.checks.plan import plan
from generator.checks.runner import row
from generator.cluster.build import build_state
from generator.lab.model import load_lab
from tests.conftest import ROOT
from tests.unit.netpol_model import NAMESPACES, POD_NAMES, pod_ip
from tests.unit.netpol_scenarios import SCENARIOS, Stage

NET = ipaddress.ip_network("172.31.9.0/24")
# The suite's ports on the test server: 80 is 8080/TCP or 8081/UDP; 81 is a port nothing
# serves (the rows probe only the test server's ports, so probes of 81 are not planned).
PORT = {("TCP", 80): 8080, ("UDP", 80): 8081, ("TCP", 81): 9081, ("UDP", 81): 9081,
        ("SCTP", 80): 8080, ("SCTP", 81): 9081}
NAMED = [{"name": f"serve-{p}-{proto.lower()}", "containerPort": PORT[(proto, p)], "protocol": proto}
         for p in (80, 81) for proto in ("TCP", "UDP")]


def base_cluster() -> dict[str, Any]:
    return dict(build_state(load_lab(ROOT / "labs" / "demo.yaml"), NET))


def model_lab(stage: Stage) -> dict[str, Any]:
    """The suite's nine pods on the demo's three nodes (one namespace per node)."""
    cluster = copy.deepcopy(base_cluster())
    nodes = [n["name"] for n in cluster["nodes"]]
    cluster["namespaces"] = [{"name": ns, "labels": {"kubernetes.io/metadata.name": ns,
                                                     **stage.ns_labels.get(ns, {})}}
                             for ns in NAMESPACES]
    cluster["pods"] = [
        {"name": f"{name}{ns}", "namespace": ns, "node": nodes[NAMESPACES.index(ns)],
         "ip": pod_ip(ns, name), "labels": {"pod": name, **stage.pod_labels.get(f"{ns}/{name}", {})},
         "containers": [{"name": "server", "command": None},
                        {"name": "ports", "command": ["sleep", "infinity"], "ports": NAMED}]}
        for ns in NAMESPACES for name in POD_NAMES]
    cluster["services"] = []
    cluster["networkPolicies"] = [_on_test_server(p) for p in stage.policies]
    return cluster


def _on_test_server(policy: dict[str, Any]) -> dict[str, Any]:
    policy = copy.deepcopy(policy)
    spec = policy["spec"]
    for rule in [*(spec.get("ingress") or ()), *(spec.get("egress") or ())]:
        for port in rule.get("ports") or ():
            if isinstance(port.get("port"), int):
                port["port"] = PORT[(port.get("protocol", "TCP"), port["port"])]
    return policy


def suite_key(pod_key: str) -> str:
    """x/ax -> x/a: kgen's pod names are unique in the lab, the suite's per namespace."""
    ns, name = pod_key.split("/")
    return f"{ns}/{name[0]}"


def planned_tables(cluster: dict[str, Any]) -> dict[tuple[int, str], dict[tuple[str, str], bool]]:
    tables: dict[tuple[int, str], dict[tuple[str, str], bool]] = {}
    for check in plan(cluster):
        if isinstance(check, NetPol):
            table = tables.setdefault((check.params["port"], check.params["protocol"]), {})
            for d in check.params["to"]:
                table[(suite_key(check.params["from"]), suite_key(d["key"]))] = d["expected"]
    return tables


CASES = [(name, i) for name, stages in SCENARIOS.items() for i in range(len(stages))]


@pytest.mark.parametrize(("name", "stage"), CASES, ids=[f"{n} [{i}]" for n, i in CASES])
def test_rows_planned_for_an_e2e_scenario_give_its_truth_table(name: str, stage: int) -> None:
    current = SCENARIOS[name][stage]
    tables = planned_tables(model_lab(current))
    if not current.policies:  # every policy deleted: a lab without policies gets no rows
        assert tables == {}
        return
    assert (8080, "TCP") in tables
    compared = 0
    for port, proto, reach in current.probes:
        if port != 80 or (PORT[(proto, 80)], proto) not in tables:
            continue  # the suite's 81, or UDP where no policy names UDP (not probed)
        got = {k: v for k, v in tables[(PORT[(proto, 80)], proto)].items() if k[0] != k[1]}
        assert got == reach.without_loopback(), f"{port}/{proto}"
        compared += 1
    if all(port == 80 and proto == "TCP" for port, proto, _ in current.probes):
        assert compared == len(current.probes)


def test_the_scenarios_compare_most_stages_and_udp_too() -> None:
    udp = 0
    compared = 0
    for name, i in CASES:
        current = SCENARIOS[name][i]
        tables = planned_tables(model_lab(current))
        for port, proto, _ in current.probes:
            if port == 80 and (PORT[(proto, 80)], proto) in tables:
                compared += 1
                udp += proto == "UDP"
    assert compared >= 40 and udp >= 1


def test_udp_is_probed_where_a_policy_names_udp_or_treats_it_otherwise() -> None:
    tcp_only = {"spec": {"ingress": [{"ports": [{"port": 80}]}]}}
    with_udp = {"spec": {"egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}}
    assert probed_ports({"networkPolicies": [tcp_only]}) == [(8080, "TCP")]
    assert probed_ports({"networkPolicies": [tcp_only, with_udp]}) == [(8080, "TCP"), (8081, "UDP")]
    by_protocol = SCENARIOS["should enforce ingress policy allowing any port traffic to a server "
                            "on a specific protocol"][0]
    assert set(planned_tables(model_lab(by_protocol))) == {(8080, "TCP"), (8081, "UDP")}


def test_without_policies_the_plan_is_unchanged() -> None:
    cluster = base_cluster()
    before = [c.id for c in plan(cluster)]
    assert before == [c.id for c in plan({**cluster, "networkPolicies": []})]
    assert not any(i.startswith("netpol[") for i in before)


DENY_WEB = {"metadata": {"name": "web-deny", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}}


def test_clients_to_nodeports_follow_the_address_the_backend_sees() -> None:
    """web-nodeport (Cluster) has pod-2 on node-1 and pod-3 on node-2. A policy that lets
    in only the client's address: through node-1 the backend there may answer (it sees the
    client) but pod-3 would see node-1's address, so the draw decides and node-1 is left
    out; web-local (Local) always shows the client: allowed through its backends' nodes."""
    cluster = base_cluster()
    client_ip = cluster["clients"][0]["ip"]
    only_client = {"metadata": {"name": "from-client", "namespace": "default"},
                   "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                            "policyTypes": ["Ingress"],
                            "ingress": [{"from": [{"ipBlock": {"cidr": client_ip + "/32"}}]}]}}
    checks = [c for c in plan({**cluster, "networkPolicies": [only_client]})
              if c.kind == "netpol-nodeport"]
    rows = {c.label: c for c in checks}
    assert set(rows) == {"client-0 to web-nodeport:30080", "client-0 to web-local:30081"}
    assert not [c for c in plan({**cluster, "networkPolicies": [only_client]})
                if c.kind == "nodeport"]
    cluster_via = {v["column"]: v["expected"] for v in rows["client-0 to web-nodeport:30080"]
                   .params["via"]}
    assert cluster_via == {"node-0:30080": False}  # node-1, node-2: a draw; node-0: node IP
    local_via = {v["column"]: v["expected"] for v in rows["client-0 to web-local:30081"]
                 .params["via"]}
    assert local_via == {"node-1:30081": True, "node-2:30081": True}  # node-0 has no backend
    reason = rows["client-0 to web-nodeport:30080"].params["via"][0]["reason"]
    assert reason.startswith("as 172.31.9.2 to default/pod-")  # node-0's address
    assert "ingress isolated by default/from-client; no policy allows it" in reason


def test_other_kinds_plan_only_what_the_policies_allow() -> None:
    """The demo with web's pods isolated: no pod-to-pod pair, ClusterIP source or NodePort
    check expects to reach them; the matrix expects them blocked, and says why."""
    cluster = {**base_cluster(), "networkPolicies": [DENY_WEB]}
    checks = plan(cluster)
    web = {"pod-2", "pod-3"}
    assert not [c for c in checks if c.kind == "pod-to-pod" and c.target in web]
    assert not [c for c in checks if c.kind in ("clusterip", "nodeport", "affinity")
                and "web" in c.label.split(":")[0]]
    # pod-2's own requests to web may go to pod-3, which the policy isolates: no hairpin
    assert not [c for c in checks if c.kind == "hairpin"]
    rows = {c.label: c for c in checks if c.kind == "netpol"}
    assert set(rows) == {f"from pod-{i} tcp/8080" for i in range(4)}
    to = {d["pod"]: d for d in rows["from pod-0 tcp/8080"].params["to"]}
    assert not to["pod-2"]["expected"] and to["pod-1"]["expected"]
    assert to["pod-2"]["reason"] == "ingress isolated by default/web-deny; no policy allows it"
    assert rows["from pod-0 tcp/8080"].expected == "reaches 2, blocked from 2 (policies)"


def summary(ok: int, answers: dict[str, int] | None = None, errors: list[str] | None = None
            ) -> dict[str, Any]:
    return {"sent": 1, "ok": ok, "answers": answers or {}, "errors": errors or [], "ms_max": 1}


def judged(seen: dict[str, dict[str, Any]]) -> tuple[NetPol, Any]:
    cluster = {**base_cluster(), "networkPolicies": [DENY_WEB]}
    check = next(c for c in plan(cluster) if c.label == "from pod-0 tcp/8080")
    status = {"pods": [{"name": p["name"], "ip": p["ip"]} for p in cluster["pods"]]}
    lab = LabView(cluster, status, lambda name: None)  # type: ignore[arg-type]
    jobs = check.jobs(lab)
    assert [j["timeout"] for j in jobs] == [10.0, 10.0, 2.0, 2.0]  # blocked: the short wait
    return check, check.judge(lab, [seen[d["pod"]] for d in check.params["to"]])


def test_a_row_passes_when_every_pair_is_as_the_policies_say() -> None:
    check, outcome = judged({"pod-0": summary(1, {"pod-0": 1}), "pod-1": summary(1, {"pod-1": 1}),
                             "pod-2": summary(0, errors=["timed out"]),
                             "pod-3": summary(0, errors=["timed out"])})
    assert outcome.passed and outcome.seen == "as expected: 2 reached, 2 blocked"
    assert outcome.extra["reach"]["default/pod-2"] == {
        "expected": False, "observed": False,
        "reason": "ingress isolated by default/web-deny; no policy allows it"}


def test_a_mismatch_names_the_pair_and_the_expected_reason() -> None:
    check, outcome = judged({"pod-0": summary(1, {"pod-0": 1}),
                             "pod-1": summary(0, errors=["timed out"]),
                             "pod-2": summary(1, {"pod-2": 1}),
                             "pod-3": summary(0, errors=["no route to host"])})
    assert not outcome.passed
    assert ("default/pod-0 → default/pod-1: blocked, expected reachable "
            "(no policy isolates either end)") in outcome.seen
    assert ("default/pod-0 → default/pod-2: reached, expected blocked (ingress isolated by "
            "default/web-deny; no policy allows it)") in outcome.seen
    assert "default/pod-0 → default/pod-3: errors: no route to host, expected blocked" in outcome.seen
    text = matrix.report([row(check, outcome)])
    assert text.splitlines() == [
        "NetworkPolicy reachability, TCP 8080 (observed):",
        "-              default/pod-0  default/pod-1  default/pod-2  default/pod-3",
        "default/pod-0  .              X              .              ?",
        "NetworkPolicy reachability, TCP 8080 (expected):",
        "-              default/pod-0  default/pod-1  default/pod-2  default/pod-3",
        "default/pod-0  .              .              X              X",
        "NetworkPolicy reachability, TCP 8080 (comparison, X: differs):",
        "-              default/pod-0  default/pod-1  default/pod-2  default/pod-3",
        "default/pod-0  .              X              X              X"]


def test_the_matrix_prints_rows_from_and_columns_to_as_the_suite() -> None:
    keys = ["x/a", "x/b", "y/a"]
    truth = {("x/a", "x/a"): True, ("x/a", "x/b"): False, ("x/b", "y/a"): True}
    assert matrix.table(keys[:2], keys, truth).splitlines() == [
        "-    x/a  x/b  y/a",
        "x/a  .    X    ?",
        "x/b  ?    ?    ."]


def test_a_connection_refused_still_reached_the_pod() -> None:
    from generator.checks.kinds.netpol import observe

    assert observe(summary(0, errors=["connection refused"]), "p") is True
    assert observe(summary(0, errors=["timed out"]), "p") is False
    assert observe(summary(1, {"q": 1}), "p") is None  # answered by the wrong pod


def test_probes_that_must_be_dropped_wait_side_by_side() -> None:
    from generator.checks.batch import BATCH_WORKERS, DROP_TIMEOUT, TIMEOUT, workers

    def probe(timeout: float) -> Any:
        return {"timeout": timeout}

    assert workers([probe(TIMEOUT)] * 40) == BATCH_WORKERS
    assert workers([probe(TIMEOUT)] * 20 + [probe(DROP_TIMEOUT)] * 20) == BATCH_WORKERS + 20
    assert workers([probe(DROP_TIMEOUT)] * 5) == 5
