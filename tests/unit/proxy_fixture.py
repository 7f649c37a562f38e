"""kube-proxy's TestOverallIPTablesRules services that a kgen lab supports, as cluster state.

svc1 ClusterIP; svc2 NodePort Local whose only endpoint is on another node; svc3 NodePort
Cluster; svc4 ClusterIP with one local and one remote endpoint; svc5 NodePort Cluster with
ClientIP affinity; svc6 ClusterIP without endpoints. Node "test-node", cluster CIDR 10.0.0.0/8.
(The fixture's svc2 and svc5 are LoadBalancers and svc4 has an external IP: kgen has neither,
so those parts are left out; see KUBE_PROXY_ONLY in test_proxy_rules.py.)
"""

from __future__ import annotations

from typing import Any

NODE = "test-node"
NODE_IP = "192.168.0.2"
CLUSTER_CIDR = "10.0.0.0/8"
SERVICE_CIDR = "172.30.0.0/16"


def service(i: int, ip: str, kind: str = "ClusterIP", node_port: int | None = None,
            policy: str = "Cluster", affinity: str = "None",
            internal: str = "Cluster") -> dict[str, Any]:
    return {"namespace": f"ns{i}", "name": f"svc{i}", "type": kind, "clusterIP": ip,
            "selector": {"svc": f"svc{i}"}, "sessionAffinity": affinity,
            "sessionAffinityTimeout": 10800, "externalTrafficPolicy": policy,
            "internalTrafficPolicy": internal,
            "ports": [{"name": "p80", "port": 80, "targetPort": 80, "protocol": "TCP",
                       "nodePort": node_port}]}


SERVICES = [
    service(1, "172.30.0.41"),
    service(2, "172.30.0.42", "NodePort", 3001, policy="Local"),
    service(3, "172.30.0.43", "NodePort", 3003),
    service(4, "172.30.0.44"),
    service(5, "172.30.0.45", "NodePort", 3002, affinity="ClientIP"),
    service(6, "172.30.0.46"),
]


def pod(name: str, ip: str, svc: str, node: str = "other-node",
        namespace: str | None = None) -> dict[str, Any]:
    """A Running pod labelled for `svc<i>`, in that service's namespace `ns<i>` (a service
    selects pods of its own namespace only) unless `namespace` says otherwise."""
    return {"name": name, "node": node, "ip": ip, "state": "Running", "labels": {"svc": svc},
            "namespace": namespace or f"ns{svc.removeprefix('svc')}"}


PODS = [
    pod("ep1", "10.180.0.1", "svc1"),
    pod("ep2", "10.180.0.2", "svc2"),
    pod("ep3", "10.180.0.3", "svc3"),
    pod("ep4", "10.180.0.4", "svc4"),
    pod("ep5", "10.180.0.5", "svc4", node=NODE),
    pod("ep6", "10.180.0.3", "svc5"),
]
