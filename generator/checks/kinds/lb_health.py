"""LoadBalancer health checks: GET / on every node's healthCheckNodePort (Local services).

kube-proxy's service health server answers 200 on a node with local ready endpoints
and 503 on one without, its body naming the service and the count (healthcheck.body).
A load balancer outside the cluster asks this to know which nodes to send to. The
client asks each node once (its own `docker exec`, a lab address only); the status and
the body must both be exact.
"""

from __future__ import annotations

import json

from generator.checks.base import CommandCheck, LabView, Outcome, Planning, svc_name
from generator.checks.batch import TIMEOUT
from generator.checks.kinds.loadbalancer import published
from generator.node import healthcheck
from generator.node.contract import NodeSpec, ServiceSpec
from generator.node.lb_election import local_ready_endpoints

# One GET that reports the status and the body, whatever the status (the probe calls any
# status but 200 an error and drops the body).
FETCH = ("import http.client, json, sys\n"
         "c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=float(sys.argv[3]))\n"
         "c.request('GET', '/', headers={'Connection': 'close'})\n"
         "r = c.getresponse()\n"
         "print(json.dumps([r.status, r.read().decode(errors='replace')]))\n")


class LbHealth(CommandCheck):
    kind = "lb-health"

    def run(self, lab: LabView) -> Outcome:
        ip, port = self.target.rsplit(":", 1)
        result = lab.host(self.source).run("python3 -c %s %s %s %s", FETCH, ip, port, str(TIMEOUT))
        try:
            status, body = json.loads(result.stdout)
        except ValueError:
            return Outcome(False, (result.stderr or result.stdout or f"exit {result.rc}").strip()[:200])
        want_status, want_body = self.params["status"], self.params["body"]
        ok = status == want_status and body == want_body
        seen = f"{status}, localEndpoints {_count(body)}"
        if status == want_status and body != want_body:
            seen += f"; body differs: {body[:120]!r}"
        return Outcome(ok, seen)


def _count(body: str) -> str:
    try:
        return str(json.loads(body).get("localEndpoints", "?"))
    except (ValueError, AttributeError):
        return "? (not JSON)"


def plan(ctx: Planning, svc: ServiceSpec) -> list[LbHealth]:
    port = svc.get("healthCheckNodePort")
    clients = ctx.cluster["clients"]
    if svc["type"] != "LoadBalancer" or not port or not clients:
        return []
    return [_on(svc, node, port, clients[0]["name"], local_count(ctx, svc, node["name"]))
            for node in ctx.cluster["nodes"]]


def local_count(ctx: Planning, svc: ServiceSpec, node: str) -> int:
    """kube-proxy's LocalReadyEndpoints on `node` (ready endpoints counted by IP)."""
    listed = ctx.listed(svc)
    if listed is None or ctx.status is None:
        return local_ready_endpoints(svc, published(ctx), node)
    on_node = {p["ip"] for p in ctx.status.get("pods", []) if p["node"] == node and p["ip"]}
    return len({e.rsplit(":", 1)[0] for e in listed["endpoints"]} & on_node)


def _on(svc: ServiceSpec, node: NodeSpec, port: int, client: str, count: int) -> LbHealth:
    status = 200 if count > 0 else 503
    body = healthcheck.body(svc.get("namespace", "default"), svc["name"], count)
    return LbHealth(f"{svc_name(svc)} on {node['name']}",
                    f"health check of {svc_name(svc)} on {node['name']}", client,
                    f"{node['ip']}:{port}", f"{status}, localEndpoints {count}",
                    frozenset(),  # the node agent's server, none of the datapath parts
                    {"status": status, "body": body, "false_failure": 0.0})
