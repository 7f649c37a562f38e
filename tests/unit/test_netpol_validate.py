"""NetworkPolicy objects refused as the API server refuses them, each problem with its path."""

from __future__ import annotations

from typing import Any

import pytest

from generator.lab import k8s_rules as rules
from generator.lab.errors import Problem
from generator.lab.netpol import policy_problems
from generator.node.netpol.policy import parse_policy
from tests.unit.netpol_scenarios import SCENARIOS


def lines(value: Any) -> list[str]:
    return [f"{p.path}: {p.message}" for p in policy_problems(value)]


def spec(**fields: Any) -> list[dict[str, Any]]:
    return [{"metadata": {"name": "p", "namespace": "x"}, "spec": fields}]


def test_every_e2e_scenario_policy_is_valid() -> None:
    policies = [p for stages in SCENARIOS.values() for s in stages for p in s.policies]
    assert len(policies) > 40
    for policy in policies:
        assert policy_problems([policy]) == [], policy


def test_the_contract_example_and_kubectl_shapes_are_valid() -> None:
    example = {"metadata": {"name": "web-allow-frontend", "namespace": "default"},
               "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}],
                                     "ports": [{"protocol": "TCP", "port": 8080}]}]}}
    kubectl = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "a.b-c", "labels": {"team": "x"}, "annotations": {"n": "v"}}}
    assert policy_problems([example, kubectl]) == [] and policy_problems(None) == []


@pytest.mark.parametrize(("fields", "expected"), [
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/24"]}}]}]},
     "networkPolicies[0].spec.ingress[0].from[0].ipBlock.except[0]: '10.0.0.0/24' must be a "
     "strict subset of cidr '10.0.0.0/24'"),
    ({"ingress": [{}, {"from": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.1.0.0/28"]}}]}]},
     "networkPolicies[0].spec.ingress[1].from[0].ipBlock.except[0]: '10.1.0.0/28' must be a "
     "strict subset of cidr '10.0.0.0/24'"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0/8"}}]}]},
     "networkPolicies[0].spec.egress[0].to[0].ipBlock.cidr: must be a valid CIDR value (e.g. "
     "10.9.8.0/24 or 2001:db8::/64), not '10.0.0/8'"),
    ({"egress": [{"to": [{"ipBlock": {"except": ["10.0.0.0/8"]}}]}]},
     "networkPolicies[0].spec.egress[0].to[0].ipBlock.cidr: is required"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
     "networkPolicies[0].spec.egress[0].to[0]: may not specify both ipBlock and another peer"),
    ({"ingress": [{"from": [{}]}]},
     "networkPolicies[0].spec.ingress[0].from[0]: must specify a peer (podSelector, "
     "namespaceSelector or ipBlock)"),
    ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]},
     "networkPolicies[0].spec.ingress[0].ports[0].protocol: 'ICMP' is not supported: TCP, UDP, SCTP"),
    ({"ingress": [{"ports": [{"port": 0}]}]},
     "networkPolicies[0].spec.ingress[0].ports[0].port: 0 must be between 1 and 65535, inclusive"),
    ({"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
     "networkPolicies[0].spec.ingress[0].ports[0].endPort: may not be specified when port is "
     "non-numeric"),
    ({"ingress": [{"ports": [{"endPort": 90}]}]},
     "networkPolicies[0].spec.ingress[0].ports[0].endPort: may not be specified when port is "
     "not specified"),
    ({"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]},
     "networkPolicies[0].spec.ingress[0].ports[0].endPort: 80 must be greater than or equal to "
     "port 90"),
    ({"ingress": [{"ports": [{"port": "80"}]}]},
     "networkPolicies[0].spec.ingress[0].ports[0].port: '80' must contain at least one letter (a-z)"),
    ({"ingress": [{"ports": [{"port": "a--b"}]}]},
     "networkPolicies[0].spec.ingress[0].ports[0].port: 'a--b' must not contain consecutive hyphens"),
    ({"policyTypes": ["Ingress", "Egress", "Ingress"]},
     "networkPolicies[0].spec.policyTypes: may not specify more than two policyTypes"),
    ({"policyTypes": ["ingress"]},
     "networkPolicies[0].spec.policyTypes[0]: 'ingress' is not supported: Ingress or Egress"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
     "networkPolicies[0].spec.podSelector.matchExpressions[0].values: must be specified when "
     "operator is In or NotIn"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
     "networkPolicies[0].spec.podSelector.matchExpressions[0].values: may not be specified when "
     "operator is Exists or DoesNotExist"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}},
     "networkPolicies[0].spec.podSelector.matchExpressions[0].operator: 'Equals' is not a valid "
     "selector operator (In, NotIn, Exists, DoesNotExist)"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["-x"]}]}},
     "networkPolicies[0].spec.podSelector.matchExpressions[0].values[0]: '-x': a label value must "
     "be empty or letters, digits, '-', '_' and '.', starting and ending with a letter or digit"),
    ({"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"a/b/c": "x"}}}]}]},
     "networkPolicies[0].spec.ingress[0].from[0].namespaceSelector.matchLabels.a/b/c: key "
     "'a/b/c': a qualified name is at most one DNS subdomain prefix, '/', and a name"),
    ({"podSelector": {"matchLabels": {"app": 1}}},
     "networkPolicies[0].spec.podSelector.matchLabels.app: expected a string, got 1 (quote it)"),
    ({"podSelector": {"matchLabel": {}}},
     "networkPolicies[0].spec.podSelector.matchLabel: unknown key (did you mean 'matchLabels'?)"),
    ({"ingress": {"from": []}},
     "networkPolicies[0].spec.ingress: expected a list, got a mapping"),
])
def test_one_bad_field_is_one_line_with_its_path(fields: dict[str, Any], expected: str) -> None:
    assert lines(spec(**fields)) == [expected]


def test_cidrs_read_as_the_api_server_reads_legacy_fields() -> None:
    # host bits and leading zeros are accepted with StrictIPCIDRValidation off (its default)
    ok = {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.7/8", "except": ["010.1.0.0/16"]}}]}]}
    assert lines(spec(**ok)) == []
    block = parse_policy(spec(**ok)[0]).ingress[0].peers[0].block  # type: ignore[index]
    assert block is not None and str(block.cidr) == "10.0.0.0/8"
    assert [str(e) for e in block.excepts] == ["10.1.0.0/16"]
    v6 = {"egress": [{"to": [{"ipBlock": {"cidr": "fd00::/8", "except": ["10.0.0.0/8"]}}]}]}
    assert lines(spec(**v6)) == ["networkPolicies[0].spec.egress[0].to[0].ipBlock.except[0]: "
                                 "'10.0.0.0/8' must be a strict subset of cidr 'fd00::/8'"]


def test_metadata_and_duplicates() -> None:
    bad = [{"apiVersion": "networking.k8s.io/v1beta1", "metadata": {"namespace": "X"}},
           {"kind": "Policy", "metadata": {"name": "Bad_Name"}},
           {"metadata": {"name": "p"}}, {"metadata": {"name": "p", "namespace": "default"}},
           {"spec": {}}, "p"]
    assert lines(bad) == [
        "networkPolicies[0].apiVersion: 'networking.k8s.io/v1beta1' is not 'networking.k8s.io/v1'",
        "networkPolicies[0].metadata.name: is required",
        "networkPolicies[0].metadata.namespace: 'X' must be a DNS-1123 label: lower-case letters, "
        "digits and '-', starting and ending with a letter or digit",
        "networkPolicies[1].kind: 'Policy' is not 'NetworkPolicy'",
        "networkPolicies[1].metadata.name: 'Bad_Name' must be a DNS-1123 subdomain: lower-case "
        "letters, digits, '-' and '.', starting and ending with a letter or digit",
        "networkPolicies[3].metadata.name: default/p already exists (networkPolicies[2])",
        "networkPolicies[4].metadata: is required (at least its name)",
        "networkPolicies[5]: expected a mapping, got 'p'",
    ]


def test_every_problem_of_a_policy_is_reported() -> None:
    fields = {"ingress": [{"ports": [{"protocol": "icmp", "port": 70000}],
                           "from": [{"ipBlock": {"cidr": "nope"}}]}],
              "policyTypes": ["Both"]}
    assert [p.path for p in policy_problems(spec(**fields))] == [
        "networkPolicies[0].spec.ingress[0].ports[0].protocol",
        "networkPolicies[0].spec.ingress[0].ports[0].port",
        "networkPolicies[0].spec.ingress[0].from[0].ipBlock.cidr",
        "networkPolicies[0].spec.policyTypes[0]"]
    assert all(isinstance(p, Problem) for p in policy_problems(spec(**fields)))


ODD_VALUES: list[Any] = [None, 0, -1, 70000, True, "", "x", "-", [], {}, [None], {"a": None},
                         "10.0.0.0/33", "::/0", [{}]]


def _paths(doc: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*here, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*here, i))
    return found


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[path[0]] = _replaced(doc[path[0]], path[1:], value)
    return copy


def test_any_odd_value_anywhere_is_a_problem_line_never_a_crash() -> None:
    """Every field of every e2e policy replaced by each odd value: the validator must
    answer with problems (or none) and never raise; what it accepts must parse."""
    policies = [p for stages in SCENARIOS.values() for s in stages for p in s.policies][:12]
    checked = 0
    for original in policies:
        for path in _paths(original):
            for value in ODD_VALUES:
                doc = _replaced(original, path, value)
                problems = policy_problems([doc])
                assert all(isinstance(p, Problem) and p.message for p in problems)
                if not problems:
                    parse_policy(doc)
                checked += 1
    assert checked > 1000


@pytest.mark.parametrize(("check", "value", "ok"), [
    (rules.qualified_name, "app", True),
    (rules.qualified_name, "kubernetes.io/metadata.name", True),
    (rules.qualified_name, "a" * 63, True),
    (rules.qualified_name, "a" * 64, False),
    (rules.qualified_name, "/app", False),
    (rules.qualified_name, "Example.com/app", False),
    (rules.qualified_name, "example.com/", False),
    (rules.qualified_name, "app_", False),
    (rules.label_value, "", True),
    (rules.label_value, "A.b-c_d", True),
    (rules.label_value, "x" * 64, False),
    (rules.dns_subdomain, "a.b-c", True),
    (rules.dns_subdomain, "a" * 254, False),
    (rules.dns_subdomain, "a..b", False),
    (rules.dns_label, "a.b", False),
    (rules.port_name, "serve-80-tcp", True),
    (rules.port_name, "a" * 15, True),
    (rules.port_name, "a" * 16, False),
    (rules.port_name, "Http", False),
    (rules.port_name, "-http", False),
    (rules.port_name, "", False),
])
def test_kubernetes_value_rules(check: Any, value: str, ok: bool) -> None:
    assert (check(value) == []) is ok


@pytest.mark.parametrize(("text", "network"), [
    ("10.0.0.7/8", "10.0.0.0/8"), ("010.001.0.0/16", "10.1.0.0/16"), ("fd00::1/8", "fd00::/8"),
    ("10.0.0.0/08", "10.0.0.0/8"), ("10.0.0.0", None), ("10.0.0.0/33", None),
    ("10.0.0/8", None), ("256.0.0.0/8", None), ("x/8", None), ("10.0.0.0/-1", None),
])
def test_cidrs_parse_as_parse_cidr_sloppy(text: str, network: str | None) -> None:
    parsed, problems = rules.parse_cidr(text)
    assert (str(parsed) if parsed else None) == network and bool(problems) == (network is None)
