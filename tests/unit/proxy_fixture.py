"""kube-proxy's TestOverallIPTablesRules services that a kgen lab supports, as cluster state.

svc1 ClusterIP; svc2 LoadBalancer Local (load-balancer IP 1.2.3.4, external IP
192.168.99.22, health check node port 30000) whose only endpoint is on another node; svc3
NodePort Cluster; svc4 an external IP (192.168.99.33) with one local and one remote endpoint;
svc5 LoadBalancer Cluster (5.6.7.8, source range 203.0.113.0/25 written with kube-proxy's
stray space) with ClientIP affinity; svc6 ClusterIP without endpoints. Node "test-node",
cluster CIDR 10.0.0.0/8.
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


def load_balancer(svc: dict[str, Any], ip: str, **fields: Any) -> dict[str, Any]:
    return {**svc, "loadBalancerIP": ip, **fields}


SERVICES = [
    service(1, "172.30.0.41"),
    load_balancer(service(2, "172.30.0.42", "LoadBalancer", 3001, policy="Local"), "1.2.3.4",
                  externalIPs=["192.168.99.22"], healthCheckNodePort=30000),
    service(3, "172.30.0.43", "NodePort", 3003),
    {**service(4, "172.30.0.44", "NodePort"), "externalIPs": ["192.168.99.33"]},
    load_balancer(service(5, "172.30.0.45", "LoadBalancer", 3002, affinity="ClientIP"),
                  "5.6.7.8", healthCheckNodePort=30000,
                  loadBalancerSourceRanges=[" 203.0.113.0/25"]),
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
