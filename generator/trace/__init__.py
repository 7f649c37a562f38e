"""`kgen trace`: one real packet's path through a running lab (docs/reference.md, `kgen trace`).

plan    -> which flow (source port chosen here) and what every member arms (a TracePlan each)
run     -> a helper per node (generator/node/trace.py) arms, probes, disarms, reports
parse   -> the kernel's trace records as data
find    -> the packet's records on each node, the frames that carried it
narrate -> each hop in the lab's words
join    -> one ordered path of hops, request then reply
verdict -> answered, refused, dropped or timeout, and why
lookup  -> DNS first: the source pod's own lookup of a name, traced before the request
render  -> plain text, a rich table, or `kgen trace --json`
"""

from __future__ import annotations

from generator.node.contract import Cluster, PublishedPod
from generator.node.documents import TraceProbeResult, TraceReport, docker_cli
from generator.trace import lookup
from generator.trace.join import Result, join
from generator.trace.plan import PROTOCOLS, Plan, TraceUsageError, make_plan, member_plans
from generator.trace.run import TraceFailure, execute

__all__ = ["Result", "TraceFailure", "TraceUsageError", "make_plan", "trace"]


def source_container(cluster: Cluster, plan: Plan) -> str:
    member = (plan.src.node or plan.src.name) if plan.src.kind in ("pod", "node") else plan.src.name
    containers = {m["name"]: m["container"] for m in cluster["nodes"]}
    containers.update({c["name"]: c["container"] for c in cluster["clients"]})
    return containers[member]


def run_plan(cluster: Cluster, plan: Plan) -> tuple[TraceProbeResult, dict[str, TraceReport]]:
    """Run one planned trace: (the probe's result, every member's report)."""
    probe, reports = execute(member_plans(cluster, plan), source_container(cluster, plan),
                             lambda container: docker_cli(cluster, container))
    broken = [f"{m}: {r['error']}" for m, r in reports.items() if r.get("error")]
    if broken:
        raise TraceFailure("; ".join(broken))
    return probe, reports


def collect(cluster: Cluster, pods: list[PublishedPod], src: str, dst: str,
            port: int | None = None, protocol: str | None = None
            ) -> tuple[Plan, TraceProbeResult, dict[str, TraceReport]]:
    """Plan and run one trace: (plan, the probe's result, every member's report)."""
    plan = make_plan(cluster, pods, src, dst, port, protocol)
    probe, reports = run_plan(cluster, plan)
    return plan, probe, reports


def trace(cluster: Cluster, pods: list[PublishedPod], src: str, dst: str,
          port: int | None = None, protocol: str | None = None,
          announcers: dict[str, str | None] | None = None) -> Result:
    """Plan, run and join one trace, after SRC's DNS lookup when DST is a name it would
    look up (lookup.py). `announcers`: each LoadBalancer IP's announcing node. Raises
    TraceUsageError (bad name or option) or TraceFailure (it could not trace)."""
    found = None
    if lookup.wants_lookup(cluster, pods, src, dst):
        if protocol is not None and protocol not in PROTOCOLS:
            raise TraceUsageError(f"--protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
        query = lookup.query_plan(cluster, pods, src, dst)
        query_probe, query_reports = run_plan(cluster, query)
        found = lookup.outcome(join(query, cluster, query_reports, query_probe))
        if not found.answers:
            return lookup.unanswered(found.query, found, dst, port, protocol)
        ip, port, protocol = lookup.request_target(cluster, pods, found, port, protocol)
        plan = make_plan(cluster, pods, src, ip, port, protocol, announcers=announcers)
        plan.dst.name = dst
    else:
        plan = make_plan(cluster, pods, src, dst, port, protocol, announcers=announcers)
    probe, reports = run_plan(cluster, plan)
    result = join(plan, cluster, reports, probe)
    result.dns = found
    return result
