"""`kgen trace SRC DST`: one real packet's path, hop by hop (docs/reference.md, `kgen trace`)."""

from __future__ import annotations

from typing import Annotated

import typer

from generator.cli.app import Exit, LabOption, app, failures, out
from generator.runtime.locate import find_lab


@app.command("trace")
def trace_cmd(src: Annotated[str, typer.Argument(help="A pod, node or client.")],
              dst: Annotated[str, typer.Argument(
                  help="A pod, a service (its first port unless --port), a node with --port "
                       "(a NodePort), or an IP address with --port.")],
              port: Annotated[int | None, typer.Option("--port", help="Destination port.")] = None,
              protocol: Annotated[str | None, typer.Option(
                  "--protocol", help="tcp (HTTP GET /hostname), udp (\"hostname\") or icmp (echo).")
              ] = None,
              as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
              lab: LabOption = None) -> None:
    """Send one real request and show its path, hop by hop, from the kernel's own trace."""
    import sys
    import time

    from generator.node.contract import live_nodes, published_pods, read_node_states
    from generator.node.lb_election import lb_announcers
    from generator.trace import TraceFailure, TraceUsageError, trace
    from generator.trace.render import as_json as to_json
    from generator.trace.render import as_text, print_rich

    with failures(lambda: "every node removed its trace rules"):
        ref = find_lab(lab)
        if not ref.is_up:
            if ref.given_file:
                ref.model()  # a bad lab file says so (exit 2)
            raise Exit(1, f"lab {ref.name} is not up; run `kgen up {ref.file_flag}` first")
        paths = ref.paths
        cluster = paths.cluster()
        if cluster is None:
            raise Exit(1, f"lab {ref.name} has no cluster state in {paths.root}; run `kgen up`")
        if "hosts" in cluster:  # its nodes' documents come through the engines
            from generator.runtime.hoststate import refresh_state

            refresh_state(cluster, paths.state_dir, force=True)
        docs = read_node_states(paths.state_dir, [n["name"] for n in cluster["nodes"]])
        pods = published_pods(cluster, docs)
        # Which node answers ARP for each LoadBalancer IP: where a client's request enters.
        announcers = lb_announcers(cluster, pods, live_nodes(cluster, paths.state_dir, time.time()))
        try:
            result = trace(cluster, pods, src, dst, port, protocol, announcers)
        except TraceUsageError as e:
            raise Exit(2, str(e)) from None
        except TraceFailure as e:
            raise Exit(1, f"could not trace: {e}") from None
        except KeyboardInterrupt:
            raise Exit(1, "trace interrupted; every node removed its trace rules") from None
        if "hosts" in cluster:  # the swarm overlay's encapsulation between hosts
            from generator.runtime.swarm import swarm_addresses
            from generator.trace.hosts import with_swarm_hops

            result.hops = with_swarm_hops(cluster, result.hops, *swarm_addresses(cluster))
    if as_json:
        print(to_json(result))
    elif sys.stdout.isatty():
        print_rich(out(), result)
    else:
        print(as_text(result))
