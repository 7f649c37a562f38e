"""`networkPolicies`: NetworkPolicy objects (networking.k8s.io/v1) checked as the API server
checks them (pkg/apis/networking/validation: ValidateNetworkPolicy and what it calls), with
the object's structure checked first as the API server's decoder would.

`policy_problems(value)` returns every problem of the list, each with its field path
(`networkPolicies[0].spec.ingress[1].from[0].ipBlock.except[0]`), as the lab's other
checks do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from generator.lab import k8s_rules as rules
from generator.lab.errors import Problem, describe, join

KEY = "networkPolicies"
API_VERSION, KIND = "networking.k8s.io/v1", "NetworkPolicy"
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
PROTOCOLS = ("TCP", "UDP", "SCTP")
POLICY_TYPES = ("Ingress", "Egress")
ANNOTATIONS_MAX = 256 * 1024  # TotalAnnotationSizeLimitB


def policy_problems(value: Any, path: str = KEY) -> list[Problem]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [Problem(path, f"expected a list, got {describe(value)}")]
    found: list[Problem] = []
    seen: dict[tuple[str, str], int] = {}
    for i, item in enumerate(value):
        here = join(path, i)
        found += list(_policy(item, here))
        key = _identity(item)
        if key is not None and key in seen:
            found.append(Problem(join(join(here, "metadata"), "name"),
                                 f"{key[0]}/{key[1]} already exists ({join(path, seen[key])})"))
        elif key is not None:
            seen[key] = i
    return found


def namespace_problems(data: dict[str, Any]) -> list[Problem]:
    """A policy's namespace must exist, as the API server's namespace lifecycle admission
    requires: `default`, `kube-system`, a listed one, or one a pod or service is in."""
    known = {"default", "kube-system"}
    for key in ("namespaces", "pods", "services"):
        items = data.get(key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                known.add(str(item.get("name" if key == "namespaces" else "namespace", "default")))
    found = []
    policies = data.get(KEY)
    for i, item in enumerate(policies if isinstance(policies, list) else []):
        identity = _identity(item)
        if identity is not None and identity[0] not in known:
            found.append(Problem(join(join(join(KEY, i), "metadata"), "namespace"),
                                 f"namespace {identity[0]!r} does not exist (list it under "
                                 "`namespaces`, or put a pod or service in it)"))
    return found


def _identity(item: Any) -> tuple[str, str] | None:
    meta = item.get("metadata") if isinstance(item, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    namespace = meta.get("namespace", "default")
    return (namespace, meta["name"]) if isinstance(namespace, str) else None


# ------------------------------------------------------------------ structure


def _mapping(value: Any, path: str, known: tuple[str, ...]) -> Iterator[Problem]:
    """A mapping's type and unknown keys (strict decoding, as `kubectl --validate=strict`)."""
    if not isinstance(value, dict):
        yield Problem(path, f"expected a mapping, got {describe(value)}")
        return
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
            yield Problem(join(path, str(key)), f"unknown key ({hint})")


def _list(value: Any, path: str) -> list[tuple[str, Any]]:
    """(path, item) of a list field; [] (and the problem reported by the caller) otherwise."""
    return [(join(path, i), v) for i, v in enumerate(value)] if isinstance(value, list) else []


def _not_list(value: Any, path: str) -> Iterator[Problem]:
    if value is not None and not isinstance(value, list):
        yield Problem(path, f"expected a list, got {describe(value)}")


def _string(value: Any, path: str) -> Iterator[Problem]:
    if not isinstance(value, str):
        yield Problem(path, f"expected a string, got {describe(value)}")


# ------------------------------------------------------------------ the object


def _policy(item: Any, path: str) -> Iterator[Problem]:
    yield from _mapping(item, path, ("apiVersion", "kind", "metadata", "spec"))
    if not isinstance(item, dict):
        return
    for key, want in (("apiVersion", API_VERSION), ("kind", KIND)):
        if key in item and item[key] != want:
            yield Problem(join(path, key), f"{describe(item[key])} is not {want!r}")
    if "metadata" not in item:
        yield Problem(join(path, "metadata"), "is required (at least its name)")
    else:
        yield from _metadata(item["metadata"], join(path, "metadata"))
    if item.get("spec") is not None:  # an omitted spec is an empty one: deny ingress to all
        yield from _spec(item["spec"], join(path, "spec"))


def _metadata(meta: Any, path: str) -> Iterator[Problem]:
    yield from _mapping(meta, path, ("name", "namespace", "labels", "annotations"))
    if not isinstance(meta, dict):
        return
    if "name" not in meta:
        yield Problem(join(path, "name"), "is required")
    for key, check in (("name", rules.dns_subdomain), ("namespace", rules.dns_label)):
        if key in meta:
            value, where = meta[key], join(path, key)
            yield from _string(value, where)
            if isinstance(value, str):
                yield from (Problem(where, f"{value!r} {m}") for m in check(value))
    if "labels" in meta:
        yield from _labels(meta["labels"], join(path, "labels"))
    if "annotations" in meta:
        yield from _annotations(meta["annotations"], join(path, "annotations"))


def _labels(labels: Any, path: str) -> Iterator[Problem]:
    """ValidateLabels: every key a qualified name, every value a label value (strings)."""
    if not isinstance(labels, dict):
        yield Problem(path, f"expected a mapping, got {describe(labels)}")
        return
    for key, value in labels.items():
        where = join(path, str(key))
        yield from (Problem(where, f"key {str(key)!r}: {m}") for m in rules.qualified_name(str(key)))
        if not isinstance(value, str):
            yield Problem(where, f"expected a string, got {describe(value)} (quote it)")
        else:
            yield from (Problem(where, f"{value!r}: {m}") for m in rules.label_value(value))


def _annotations(notes: Any, path: str) -> Iterator[Problem]:
    if not isinstance(notes, dict):
        yield Problem(path, f"expected a mapping, got {describe(notes)}")
        return
    size = 0
    for key, value in notes.items():
        where = join(path, str(key))
        yield from (Problem(where, f"key {str(key)!r}: {m}")
                    for m in rules.qualified_name(str(key).lower()))
        yield from _string(value, where)
        size += len(str(key)) + len(str(value))
    if size > ANNOTATIONS_MAX:
        yield Problem(path, f"may not be more than {ANNOTATIONS_MAX} bytes in all")


def _spec(spec: Any, path: str) -> Iterator[Problem]:
    yield from _mapping(spec, path, ("podSelector", "policyTypes", "ingress", "egress"))
    if not isinstance(spec, dict):
        return
    if spec.get("podSelector") is not None:
        yield from _selector(spec["podSelector"], join(path, "podSelector"))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        where = join(path, direction)
        yield from _not_list(spec.get(direction), where)
        for rule_path, rule in _list(spec.get(direction), where):
            yield from _rule(rule, rule_path, peers)
    yield from _policy_types(spec.get("policyTypes"), join(path, "policyTypes"))


def _policy_types(types: Any, path: str) -> Iterator[Problem]:
    yield from _not_list(types, path)
    if not isinstance(types, list):
        return
    if len(types) > len(POLICY_TYPES):
        yield Problem(path, "may not specify more than two policyTypes")
        return
    for where, value in _list(types, path):
        if value not in POLICY_TYPES:
            yield Problem(where, f"{describe(value)} is not supported: Ingress or Egress")


def _rule(rule: Any, path: str, peers_key: str) -> Iterator[Problem]:
    yield from _mapping(rule, path, ("ports", peers_key))
    if not isinstance(rule, dict):
        return
    for key, check in (("ports", _port), (peers_key, _peer)):
        yield from _not_list(rule.get(key), join(path, key))
        for where, value in _list(rule.get(key), join(path, key)):
            yield from check(value, where)


def _peer(peer: Any, path: str) -> Iterator[Problem]:
    """ValidateNetworkPolicyPeer: one kind of peer, or pod and namespace selectors together."""
    yield from _mapping(peer, path, ("podSelector", "namespaceSelector", "ipBlock"))
    if not isinstance(peer, dict):
        return
    given = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(k) is not None]
    for key in ("podSelector", "namespaceSelector"):
        if key in given:
            yield from _selector(peer[key], join(path, key))
    if "ipBlock" in given:
        yield from _ip_block(peer["ipBlock"], join(path, "ipBlock"))
    if not given:
        yield Problem(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    elif len(given) > 1 and "ipBlock" in given:
        yield Problem(path, "may not specify both ipBlock and another peer")


def _selector(selector: Any, path: str) -> Iterator[Problem]:
    """ValidateLabelSelector with invalid label values refused (a new object)."""
    yield from _mapping(selector, path, ("matchLabels", "matchExpressions"))
    if not isinstance(selector, dict):
        return
    if selector.get("matchLabels") is not None:
        yield from _labels(selector["matchLabels"], join(path, "matchLabels"))
    where = join(path, "matchExpressions")
    yield from _not_list(selector.get("matchExpressions"), where)
    for expr_path, expr in _list(selector.get("matchExpressions"), where):
        yield from _requirement(expr, expr_path)


def _requirement(expr: Any, path: str) -> Iterator[Problem]:
    yield from _mapping(expr, path, ("key", "operator", "values"))
    if not isinstance(expr, dict):
        return
    op, values = expr.get("operator"), expr.get("values")
    yield from _not_list(values, join(path, "values"))
    values = values if isinstance(values, list) else []
    if op in ("In", "NotIn") and not values:
        yield Problem(join(path, "values"), "must be specified when operator is In or NotIn")
    elif op in ("Exists", "DoesNotExist") and values:
        yield Problem(join(path, "values"),
                      "may not be specified when operator is Exists or DoesNotExist")
    elif op not in OPERATORS:
        yield Problem(join(path, "operator"), f"{describe(op)} is not a valid selector operator "
                                              f"({', '.join(OPERATORS)})")
    if "key" not in expr:
        yield Problem(join(path, "key"), "is required")
    elif isinstance(expr["key"], str):
        yield from (Problem(join(path, "key"), f"{expr['key']!r}: {m}")
                    for m in rules.qualified_name(expr["key"]))
    else:
        yield from _string(expr["key"], join(path, "key"))
    for where, value in _list(values, join(path, "values")):
        if not isinstance(value, str):
            yield Problem(where, f"expected a string, got {describe(value)} (quote it)")
        else:
            yield from (Problem(where, f"{value!r}: {m}") for m in rules.label_value(value))


def _ip_block(block: Any, path: str) -> Iterator[Problem]:
    """ValidateIPBlock: cidr a CIDR, every except one strictly inside it."""
    yield from _mapping(block, path, ("cidr", "except"))
    if not isinstance(block, dict):
        return
    cidr_path = join(path, "cidr")
    if not block.get("cidr"):
        yield Problem(cidr_path, "is required")
        return
    yield from _string(block["cidr"], cidr_path)
    if not isinstance(block["cidr"], str):
        return
    outer, bad = rules.parse_cidr(block["cidr"])
    yield from (Problem(cidr_path, m) for m in bad)
    yield from _not_list(block.get("except"), join(path, "except"))
    for where, text in _list(block.get("except"), join(path, "except")):
        if not isinstance(text, str):
            yield Problem(where, f"expected a string, got {describe(text)}")
            continue
        inner, bad = rules.parse_cidr(text)
        yield from (Problem(where, m) for m in bad)
        if inner is not None and outer is not None and not rules.strict_subset(inner, outer):
            yield Problem(where, f"{text!r} must be a strict subset of cidr {block['cidr']!r}")


def _port(port: Any, path: str) -> Iterator[Problem]:
    """ValidateNetworkPolicyPort."""
    yield from _mapping(port, path, ("protocol", "port", "endPort"))
    if not isinstance(port, dict):
        return
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        yield Problem(join(path, "protocol"), f"{describe(protocol)} is not supported: "
                                              f"{', '.join(PROTOCOLS)}")
    number, end = port.get("port"), port.get("endPort")
    end_path = join(path, "endPort")
    if end is not None and (not isinstance(end, int) or isinstance(end, bool)):
        yield Problem(end_path, f"expected an integer, got {describe(end)}")
        end = None
    if isinstance(number, bool) or not isinstance(number, (int, str, type(None))):
        yield Problem(join(path, "port"), f"expected a number or a port name, got {describe(number)}")
    elif isinstance(number, int):
        yield from (Problem(join(path, "port"), f"{number} {m}") for m in rules.port_number(number))
        if end is not None and end < number:
            yield Problem(end_path, f"{end} must be greater than or equal to port {number}")
        if end is not None:
            yield from (Problem(end_path, f"{end} {m}") for m in rules.port_number(end))
    elif isinstance(number, str):
        if end is not None:
            yield Problem(end_path, "may not be specified when port is non-numeric")
        yield from (Problem(join(path, "port"), f"{number!r} {m}") for m in rules.port_name(number))
    elif end is not None:
        yield Problem(end_path, "may not be specified when port is not specified")
