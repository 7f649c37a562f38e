"""NetworkPolicy objects as cluster.json carries them: what the API server stores after
defaulting (SetDefaults_NetworkPolicy and the port defaults), so that no node has to know
the defaults. The lab file's objects are already validated (generator.lab.netpol)."""

from __future__ import annotations

import copy
from typing import Any

from generator.node.contract import NetworkPolicySpec


def normalise(raw: dict[str, Any]) -> NetworkPolicySpec:
    """`metadata` is reduced to name and namespace (default `default`); `spec.podSelector`
    is `{}` when omitted; `policyTypes`, when omitted, is Ingress, plus Egress when the
    policy has egress rules; each port's protocol is TCP when omitted."""
    meta = raw.get("metadata") or {}
    spec = copy.deepcopy(raw.get("spec") or {})
    spec["podSelector"] = spec.get("podSelector") or {}
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    for direction in ("ingress", "egress"):
        if spec.get(direction) is None:
            spec.pop(direction, None)
        for rule in spec.get(direction) or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")
    return {"metadata": {"name": str(meta["name"]),
                         "namespace": str(meta.get("namespace") or "default")},
            "spec": spec}
