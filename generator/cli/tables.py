"""Human-readable tables of a lab's status (the JSON form is `kgen status --json`)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from generator.node.documents import ServiceRow, StatusReport


def _ports(service: ServiceRow) -> str:
    parts = []
    for p in service["ports"]:
        text = f"{p['port']}/{p['protocol']}→{p['targetPort']}"
        if p.get("nodePort"):
            text += f" (node {p['nodePort']})"
        parts.append(text)
    return ", ".join(parts)


def _outside(service: ServiceRow) -> str:
    """The addresses the service answers on from outside: its load-balancer IP with the
    node that announces it, and its externalIPs."""
    parts = []
    if service.get("loadBalancerIP"):
        parts.append(f"{service['loadBalancerIP']} "
                     f"(announced by {service.get('announcedBy') or 'nobody'})")
    parts += service.get("externalIPs") or []
    if service.get("healthCheckNodePort"):
        parts.append(f"health check :{service['healthCheckNodePort']}")
    return ", ".join(parts) or "-"


def tables(report: StatusReport) -> list[Table]:
    nodes = Table("node", "container", "node IP", "pod subnet", "state", title="nodes")
    for n in report["nodes"]:
        nodes.add_row(n["name"], n["container"], n["ip"], n["podCIDR"], n["state"])
    # The namespace first, as `kubectl get -A` shows it.
    pods = Table("namespace", "pod", "node", "IP", "state", "restarts", title="pods")
    for p in report["pods"]:
        pods.add_row(p["namespace"], p["name"], p["node"], p["ip"] or "-", p["state"],
                     str(p["restarts"]))
    services = Table("namespace", "service", "type", "cluster IP", "external IPs", "ports",
                     "endpoints", title="services")
    for s in report["services"]:
        leaving = "".join(f", {e} (terminating)" for e in s.get("terminating") or [])
        services.add_row(s["namespace"], s["name"], s["type"], s["clusterIP"], _outside(s),
                         _ports(s), (", ".join(s["endpoints"]) + leaving).strip(", ") or "(none)")
    clients = Table("client", "container", "IP", title="clients")
    for c in report["clients"]:
        clients.add_row(c["name"], c["container"], c["ip"])
    return [t for t in (nodes, pods, services, clients) if t.row_count]


def print_status(console: Console, report: StatusReport) -> None:
    shown = tables(report)
    if not shown:
        console.print(f"lab {report['name']}: nothing rendered or running")
    for table in shown:
        console.print(table)
