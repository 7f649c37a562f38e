"""externalIPs: a client routes a service's external IP to a node and is served there.

Nobody announces an external IP (Kubernetes leaves that to the cluster's admin), so the
check's one `docker exec` on the client first routes IP/32 via the node
(`ip route replace`; clients have NET_ADMIN), then sends its requests, then removes the
route again, whatever they gave. Judged as a NodePort through that node: Cluster
spreads over every backend, which sees an address of the node (SNAT); Local goes
through a node with a backend, which alone serves and sees the client's IP.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from typing import Any

from generator.checks.base import CommandCheck, LabView, Outcome, Planning, Pod, names, shown, svc_name
from generator.checks.batch import PROBE, TIMEOUT
from generator.checks.kinds.nodeport import SNAT_DRAWS, NodePort, _depends
from generator.checks.stats import miss_probability, spread_requests
from generator.node.contract import ServiceSpec
from generator.node.documents import ProbeSummary


class ExternalIP(CommandCheck):
    kind = "external-ip"

    def run(self, lab: LabView) -> Outcome:
        ip, port = self.target.rsplit(":", 1)
        route = shlex.quote(f"{ip}/32")
        via = shlex.quote(self.params["node"]["ip"])
        probe = (f"{PROBE} http {shlex.quote(ip)} {int(port)} %s --count %d "
                 f"--timeout {TIMEOUT} --fail-fast --json")
        script = (f"ip route replace {route} via {via} || exit 3\n"
                  f"{probe % ('/hostname', self.params['requests'])}\n"
                  f"{probe % ('/clientip', self.params['draws'])}\n"
                  f"ip route del {route} via {via}\n")
        result = lab.host(self.source).run("sh -c %s", script)
        lines = result.stdout.strip().splitlines()
        try:
            summaries = [summary(json.loads(line)) for line in lines]
        except ValueError:
            summaries = []
        if len(summaries) != 2:
            return Outcome(False, (result.stderr or result.stdout or f"exit {result.rc}").strip()[:200])
        # The same verdict as a NodePort through that node (the same params).
        via_node = NodePort(self.label, self.what, self.source, self.target, self.expected,
                            self.depends, self.params)
        return via_node.judge(lab, summaries)


def summary(attempts: list[dict[str, Any]]) -> ProbeSummary:
    """The probe's attempts (`--json`) summed up as a batch would report them."""
    return {"sent": len(attempts), "ok": sum(1 for a in attempts if a["ok"]),
            "answers": dict(Counter(a["answer"] for a in attempts if a["ok"])),
            "errors": dict(Counter(a["error"] for a in attempts if not a["ok"])),
            "ms_max": max((a["ms"] for a in attempts), default=0.0)}


def plan(ctx: Planning, svc: ServiceSpec, backends: list[Pod]) -> list[ExternalIP]:
    port = next((p for p in svc["ports"] if p["protocol"] == "TCP"), None)
    clients = ctx.cluster["clients"]
    if port is None or not clients or not backends:
        return []
    local = svc["externalTrafficPolicy"] == "Local"
    backend_nodes = {b["node"] for b in backends}
    # Cluster: a node without a backend if there is one (it must forward, and SNAT).
    nodes = [n for n in ctx.cluster["nodes"] if (n["name"] in backend_nodes) == local]
    node = (nodes or ctx.cluster["nodes"])[0]
    serving = [b for b in backends if b["node"] == node["name"]] if local else backends
    client = clients[0]
    requests = spread_requests(len(serving))
    seen = (f"backend sees the client's IP {client['ip']}" if local
            else f"backend sees an address of {node['name']}, not the client")
    expected = f"routed via {node['name']}: {shown(names(serving))} serve; {seen}"
    params: dict[str, Any] = {
        "policy": svc["externalTrafficPolicy"], "node": node, "drop": False,
        "client_ip": client["ip"], "requests": requests, "draws": SNAT_DRAWS,
        "backends": names(serving), "false_failure": miss_probability(len(serving), requests)}
    return [ExternalIP(f"{svc_name(svc)} {ip}:{port['port']} via {node['name']}",
                       f"externalIP {ip} of {svc_name(svc)} routed via {node['name']}",
                       client["name"], f"{ip}:{port['port']}", expected,
                       _depends(node["name"], serving, dropped=False), params)
            for ip in svc.get("externalIPs") or []]
