"""`kgen trace` names the NetworkPolicy of each hop it decided, replayed on real traces.

The fixtures were recorded (`generator.trace.collect`) on a three-node lab
whose namespace `shop` denies ingress by default (shop/default-deny-ingress)
and lets default's frontend pods reach its web pods on the named port `http`
(shop/web-allow-frontend); other-0 (default, not a frontend) is blocked from
web-0. `netpol-*` in iptables mode, `nft-netpol-*` in nftables mode.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from generator.trace.join import join
from generator.trace.parse import Event
from generator.trace.plan import make_plan
from generator.trace.policy import PolicyNamer, planned_chains
from generator.trace.render import as_text
from tests.unit.test_trace import load


def replay(d: dict[str, Any]) -> Any:
    a = d["args"]
    plan = make_plan(d["cluster"], d["pods"], a["src"], a["dst"], a["port"], a["protocol"],
                     sport=a["sport"])
    return join(plan, d["cluster"], d["reports"], d["probe"])


@pytest.mark.parametrize("name", ["netpol-blocked", "nft-netpol-blocked"])
def test_a_blocked_packet_ends_dropped_naming_the_isolating_policy(name: str) -> None:
    result = replay(load(name))
    doc = json.loads(json.dumps(result.as_json()))
    assert doc["verdict"] == "dropped"
    last = doc["hops"][-1]
    assert last["step"] == "drop" and last["node"] == "node-0"
    assert last["policy"] == "shop/default-deny-ingress"
    assert last["chain"].startswith("KUBE-POD-FW-")
    assert "isolated by 2 policies, first shop/default-deny-ingress" in last["rule"]
    assert all("policy" in h for h in doc["hops"])
    named = [h["policy"] for h in doc["hops"] if h["policy"]]
    assert named == ["shop/default-deny-ingress", "shop/web-allow-frontend",
                     *(["shop/web-allow-frontend"] if name == "netpol-blocked" else []),
                     "shop/default-deny-ingress"]
    assert result.summary.startswith("dropped at node-0 by NetworkPolicy shop/default-deny-ingress")
    assert "derived" not in as_text(result)  # the kernel's trace showed the drop


@pytest.mark.parametrize("name", ["netpol-allowed", "nft-netpol-allowed"])
def test_an_allowed_packet_names_the_allowing_policy(name: str) -> None:
    result = replay(load(name))
    assert result.verdict == "answered" and result.answered_by == "web-1"
    by_policy = [(h.chain, h.policy, h.detail) for h in result.hops if h.policy]
    allowing = [d for chain, p, d in by_policy if p == "shop/web-allow-frontend"]
    assert any("allowed by NetworkPolicy shop/web-allow-frontend (allow mark 0x10000 set) → RETURN"
               in d for d in allowing)
    assert any("marks the packet allowed (0x10000)" in d for d in allowing)
    text = as_text(result)
    assert "clears the allow mark" in text
    # Every printed line of a policy's hop names its policy.
    assert all(h.policy in h.detail for h in result.hops if h.policy)
    # The reply passes as an established connection: no policy decides it.
    assert not [h for h in result.hops if h.direction == "reply" and h.policy]


def test_a_drop_the_trace_lost_is_derived_from_the_policies_and_says_so() -> None:
    d = copy.deepcopy(load("nft-netpol-blocked"))
    lines = d["reports"]["node-0"]["lines"]
    d["reports"]["node-0"]["lines"] = [line for line in lines if " kgen-netpol " not in line]
    result = replay(d)
    assert result.verdict == "dropped"
    last = result.hops[-1]
    assert last.step == "drop" and last.policy == "shop/default-deny-ingress" and last.node == "node-0"
    assert "derived from the lab's policies: the kernel's trace showed no drop rule" in last.detail
    assert "ingress isolated by shop/default-deny-ingress, shop/web-allow-frontend" in last.detail
    assert "(derived, not traced)" in result.summary


def test_a_timeout_the_policies_allow_stays_a_timeout() -> None:
    d = copy.deepcopy(load("nft-netpol-allowed"))
    d["probe"] = {"ok": False, "answer": None, "error": "timed out", "ms": 2000.0, "backlogDrops": 0}
    d["reports"]["node-1"]["lines"] = []  # nothing after node-0: lost on the way
    result = replay(d)
    assert result.verdict == "timeout" and not [h for h in result.hops if h.policy]


def test_a_policy_chain_never_jumped_to_is_named_from_the_lab_plan() -> None:
    cluster = load("netpol-blocked")["cluster"]
    chains = planned_chains(cluster)
    assert set(chains.values()) == {"shop/default-deny-ingress", "shop/web-allow-frontend",
                                    "shop/db-allow-web"}
    chain = next(c for c, p in chains.items() if p == "shop/db-allow-web")
    namer = PolicyNamer({}, lambda: chains)
    ret = Event("filter", chain, "rule", "RETURN", None, f"-A {chain} -m mark --mark "
                "0x10000/0x10000 -j RETURN")
    assert namer.name(ret) == "shop/db-allow-web"
    assert namer.detail(ret, "x", "shop/db-allow-web").endswith(
        "allowed by NetworkPolicy shop/db-allow-web (allow mark 0x10000 set) → RETURN")
    peer = Event("filter", "KUBE-SRC-ABC", "rule", "CONTINUE", None,
                 "-A KUBE-SRC-ABC -s 10.244.0.3/32 -j MARK --set-xmark 0x10000/0x10000")
    assert namer.name(peer) == "shop/db-allow-web"  # the policy whose rule jumped in
    kube = Event("filter", "KUBE-FORWARD", "rule", "ACCEPT", None, "-A KUBE-FORWARD -j ACCEPT")
    assert namer.name(kube) is None
    assert planned_chains({**cluster, "networkPolicies": []}) == {}
