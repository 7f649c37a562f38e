"""The evaluator against the Kubernetes network-policy e2e suite's truth tables.

Each scenario is one test of test/e2e/network/netpol/network_policy.go (its
name is the test id); every stage's probes must give the suite's expected
table, loopback aside as in the suite. A failure prints both matrices.
"""

from __future__ import annotations

import pytest

from generator.netpol.evaluate import Evaluator, render_matrix
from generator.node.netpol.policy import Cluster, NamedPort, Namespace, Pod, parse_policy
from tests.unit.netpol_model import keys, model_cluster, pod_a, policy
from tests.unit.netpol_scenarios import SCENARIOS, Stage


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_e2e_scenario_truth_tables(name: str) -> None:
    for number, stage in enumerate(SCENARIOS[name]):
        evaluator = Evaluator(stage_cluster(stage))
        for port, proto, reach in stage.probes:
            got = {k: v for k, v in evaluator.matrix(port, proto).items() if k[0] != k[1]}
            want = reach.without_loopback()
            assert got == want, (f"stage {number}, {port}/{proto}\nexpected:\n"
                                 f"{render_matrix(keys(), want)}got:\n{render_matrix(keys(), got)}")


def stage_cluster(stage: Stage) -> Cluster:
    return model_cluster(stage.policies, stage.ns_labels, stage.pod_labels)


def test_at_least_twenty_scenarios_and_both_protocols() -> None:
    probes = [p for stages in SCENARIOS.values() for s in stages for p in s.probes]
    assert len(SCENARIOS) >= 20
    assert {proto for _, proto, _ in probes} == {"TCP", "UDP"}


def test_a_blocked_pair_names_the_isolating_policy_and_an_allowed_one_the_allowing() -> None:
    deny = policy("deny-ingress", ingress=[])
    allow = pod_a("allow-from-b", ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}])
    ev = Evaluator(model_cluster([deny, allow]))
    pods = {p.key: p for p in ev.cluster.pods}
    blocked = ev.decide(pods["y/a"], pods["x/a"], 80)
    assert not blocked.allowed and blocked.policy == "x/deny-ingress"  # the first isolating one
    assert set(blocked.ingress.isolated_by) == {"x/deny-ingress", "x/allow-from-b"}
    assert blocked.reason == "ingress isolated by x/deny-ingress, x/allow-from-b; no policy allows it"
    allowed = ev.decide(pods["x/b"], pods["x/a"], 80)
    assert allowed.allowed and allowed.policy == "x/allow-from-b"
    assert allowed.reason == "ingress allowed by x/allow-from-b"
    free = ev.decide(pods["x/a"], pods["y/b"], 80)
    assert free.allowed and free.policy is None and free.reason == "no policy isolates either end"


def test_end_port_and_named_ports_resolve_on_the_destination_pod() -> None:
    web = (NamedPort("http", 8080), NamedPort("dns", 53, "UDP"))
    other = (NamedPort("http", 9090),)
    pods = [Pod("default", "src", "10.251.1.2", {"app": "client"}),
            Pod("default", "web", "10.251.1.3", {"app": "web"}, web),
            Pod("default", "alt", "10.251.1.4", {"app": "web"}, other)]
    egress = policy("out", {"matchLabels": {"app": "client"}}, ns="default", egress=[
        {"ports": [{"port": "http"}, {"port": 30000, "endPort": 30010, "protocol": "UDP"}]}])
    ev = Evaluator(Cluster([Namespace("default")], pods, [parse_policy(egress)]))
    src = pods[0]
    assert ev.decide(src, pods[1], 8080).allowed and not ev.decide(src, pods[1], 9090).allowed
    assert ev.decide(src, pods[2], 9090).allowed and not ev.decide(src, pods[2], 8080).allowed
    assert not ev.decide(src, pods[1], 53, "UDP").allowed  # named "dns" not in the policy
    assert ev.decide(src, "10.251.9.9", 30010, "UDP").allowed
    assert not ev.decide(src, "10.251.9.9", 30011, "UDP").allowed
    assert not ev.decide(src, "10.251.9.9", 8080).allowed  # a named port needs a pod


def test_a_pod_reaches_itself_and_its_own_node_always() -> None:
    pods = [Pod("default", "p", "10.251.1.2", node="n0")]
    deny = policy("deny", ns="default", ingress=[], egress=[])
    ev = Evaluator(Cluster([], pods, [parse_policy(deny)]), node_ips={"n0": "10.251.0.1",
                                                                     "n1": "10.251.0.2"})
    assert ev.decide("10.251.0.1", pods[0], 80).allowed and ev.decide(pods[0], "10.251.0.1", 80).allowed
    assert not ev.decide("10.251.0.2", pods[0], 80).allowed
    assert ev.decide(pods[0], pods[0], 80).allowed  # a pod cannot block itself


def test_omitted_policy_types_default_as_the_api_server_does() -> None:
    only_egress_rules = parse_policy({"metadata": {"name": "p"}, "spec": {
        "podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}})
    assert only_egress_rules.ingress == () and only_egress_rules.egress is not None
    empty_egress = parse_policy({"metadata": {"name": "p"}, "spec": {"egress": []}})
    assert empty_egress.ingress == () and empty_egress.egress is None
