"""`kgen check`'s checks: one pytest test per check, one test function per kind.

Collected by `kgen check` (generator.checks.runner), which parametrises each
function with the lab plan's checks of its kind: `clusterip[web:80 from pod-0]`
is the ClusterIP check of service web, port 80, from pod-0. The lab is the
`kgen_lab` fixture of kgen's pytest plugin, as in users' own tests;
`kgen_checks` runs every selected check in the background, in parallel (the
probes batched per container, the checks with commands of their own on
testinfra hosts), and hands each test its check's outcome: a probe check's
summaries judged, or a command check's verdict.
"""

from __future__ import annotations

from generator.checks.base import Check
from generator.checks.runner import CheckRun


def verify(check: Check, kgen_checks: CheckRun) -> None:
    outcome = kgen_checks.outcome(check)
    assert outcome.passed, f"{check.what}: expected {check.expected}; saw {outcome.seen}"


def pod_to_pod(check: Check, kgen_checks: CheckRun) -> None:
    """A pod reaches another and is seen with its own IP (kinds/pod_to_pod.py)."""
    verify(check, kgen_checks)


def netpol(check: Check, kgen_checks: CheckRun) -> None:
    """A pod's row of the NetworkPolicy matrix: every pod reached or blocked as the
    policies say (kinds/netpol.py)."""
    verify(check, kgen_checks)


def netpol_nodeport(check: Check, kgen_checks: CheckRun) -> None:
    """A client's row of the NodePort matrix: through every node, reached or blocked as
    the policies isolating the backends say (kinds/netpol_nodeport.py)."""
    verify(check, kgen_checks)


def wire(check: Check, kgen_checks: CheckRun) -> None:
    """The overlay's packets on the node network (kinds/wire.py)."""
    verify(check, kgen_checks)


def mtu(check: Check, kgen_checks: CheckRun) -> None:
    """A full-size DF packet crosses nodes (kinds/mtu.py)."""
    verify(check, kgen_checks)


def clusterip(check: Check, kgen_checks: CheckRun) -> None:
    """A service's cluster IP spreads over its backends, no SNAT (kinds/clusterip.py)."""
    verify(check, kgen_checks)


def conntrack(check: Check, kgen_checks: CheckRun) -> None:
    """The node's conntrack holds the DNAT of a request (kinds/conntrack.py)."""
    verify(check, kgen_checks)


def clusterip_udp(check: Check, kgen_checks: CheckRun) -> None:
    """UDP datagrams to a cluster IP are answered by backends (kinds/clusterip_udp.py)."""
    verify(check, kgen_checks)


def affinity(check: Check, kgen_checks: CheckRun) -> None:
    """ClientIP affinity pins a client to one backend (kinds/affinity.py)."""
    verify(check, kgen_checks)


def hairpin(check: Check, kgen_checks: CheckRun) -> None:
    """A backend reaches itself through its service (kinds/hairpin.py)."""
    verify(check, kgen_checks)


def no_endpoints(check: Check, kgen_checks: CheckRun) -> None:
    """A service without endpoints refuses at once (kinds/no_endpoints.py)."""
    verify(check, kgen_checks)


def nodeport(check: Check, kgen_checks: CheckRun) -> None:
    """A NodePort through every node, per traffic policy (kinds/nodeport.py)."""
    verify(check, kgen_checks)


def loadbalancer(check: Check, kgen_checks: CheckRun) -> None:
    """A LoadBalancer IP from every client, via its announcer (kinds/loadbalancer.py)."""
    verify(check, kgen_checks)


def lb_health(check: Check, kgen_checks: CheckRun) -> None:
    """A Local LoadBalancer's health check node port on every node (kinds/lb_health.py)."""
    verify(check, kgen_checks)


def external_ip(check: Check, kgen_checks: CheckRun) -> None:
    """An external IP routed by the client to a node (kinds/external_ip.py)."""
    verify(check, kgen_checks)


def localhost(check: Check, kgen_checks: CheckRun) -> None:
    """A NodePort answers on a node's 127.0.0.1, iptables mode (kinds/localhost_nodeport.py)."""
    verify(check, kgen_checks)


def dns(check: Check, kgen_checks: CheckRun) -> None:
    """Services resolve from every namespace; outside names are refused (kinds/dns.py)."""
    verify(check, kgen_checks)
