"""Conntrack: the DNAT of one ClusterIP request, as the source's node recorded it.

The backend reports the request's source port (/clientip), and the node's
conntrack table must hold that very flow with a backend as its reply's
source. One such check per lab, from a node without a backend.
"""

from __future__ import annotations

from generator.checks.base import CommandCheck, LabView, Outcome
from generator.checks.batch import probe_once
from generator.checks.kinds.clusterip import ClusterIP


class Conntrack(CommandCheck):
    kind = "conntrack"

    def run(self, lab: LabView) -> Outcome:
        vip, port = self.target.rsplit(":", 1)
        attempts = probe_once(lab, self.source, self.target, "/clientip")
        replies = [str(r["answer"]) for r in attempts if r.get("ok")]
        if not replies:
            return Outcome(False, "the request itself failed: "
                           + "; ".join(str(r.get("error")) for r in attempts))
        sport = replies[0].rsplit(":", 1)[1]
        result = lab.host(self.params["node"]).run(
            "conntrack -L -p tcp --orig-dst %s --orig-port-dst %s --orig-port-src %s 2>/dev/null",
            vip, port, sport)
        backend_ips = {lab.pod_ip[b] for b in self.params["backends"]}
        for line in result.stdout.splitlines():
            # The reply direction's source is the DNATed backend: the second src= on the line.
            sources = [f.split("=", 1)[1] for f in line.split() if f.startswith("src=")]
            if len(sources) == 2 and sources[1] in backend_ips:
                return Outcome(True, f"{sources[0]}:{sport} → {vip}:{port}, reply from {sources[1]}")
        return Outcome(False, f"no conntrack entry for source port {sport}")


def plan(of: ClusterIP, node: str) -> Conntrack:
    """The conntrack check riding on a ClusterIP check from `node` (without a backend)."""
    svc = of.params["service"]
    return Conntrack(of.label, f"conntrack DNAT of {svc} on {node}", of.source, of.target,
                     "entry: reply from a backend IP", of.depends, {**of.params, "node": node})
