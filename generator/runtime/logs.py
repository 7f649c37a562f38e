"""`kgen logs`: a pod container's output, which the node agent writes to
/var/log/kgen/pods/<pod>/<container>.log inside the pod's node.

Like `kgen exec`: no Docker SDK, one `docker exec`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from generator.node.contract import Cluster

POD_LOG_DIR = "/var/log/kgen/pods"  # generator.node.pods.LOG_DIR, inside the node


def logs_argv(cluster: Cluster, pod: str, container: str | None, follow: bool = False,
              tail: int | None = None) -> tuple[list[str], str | None]:
    """The `docker exec` command line that prints the log, and a note for stderr
    when the container was picked by default (as kubectl says "Defaulted container")."""
    spec = next((p for p in cluster["pods"] if p["name"] == pod), None)
    if spec is None:
        known = ", ".join(p["name"] for p in cluster["pods"]) or "none"
        raise LookupError(f"no pod named {pod!r} (pods: {known})")
    names = [c["name"] for c in spec["containers"]]
    note = None
    if container is None:
        container = names[0]
        if len(names) > 1:
            note = f'Defaulted container "{container}" out of: {", ".join(names)}'
    elif container not in names:
        raise LookupError(f"container {container!r} is not valid for pod {pod} "
                          f"(choose one of: {', '.join(names)})")
    node = next(n for n in cluster["nodes"] if n["name"] == spec["node"])
    path = f"{POD_LOG_DIR}/{pod}/{container}.log"
    from generator.runtime.hostcli import member_cli

    argv = [*member_cli(cluster, node["container"]), "exec", node["container"], "tail", "-n",
            "+1" if tail is None else str(tail)]
    if follow:
        argv.append("-F")
    return [*argv, path], note


def logs_command(lab: str | None, pod: str, container: str | None, follow: bool = False,
                 tail: int | None = None) -> tuple[list[str], str | None]:
    """`logs_argv` for the lab `-l LAB` means. LabError (exit 2) for a bad lab file,
    LookupError (exit 2) for an unknown pod or container, RuntimeFailure (exit 1)
    when the lab is not running."""
    from generator.runtime.errors import RuntimeFailure
    from generator.runtime.locate import rendered_lab

    ref, cluster = rendered_lab(lab)
    found = logs_argv(cluster, pod, container, follow, tail)  # an unknown pod first (exit 2)
    if not ref.is_up:
        raise RuntimeFailure(f"lab {ref.name} is not running; run `kgen up {ref.file_flag}`")
    return found
