"""`kgen exec`: a command in a node, a client or a pod's network namespace.

Deliberately light: no Docker SDK, and the `docker exec` replaces the kgen
process (exec), so that `kgen exec` costs little more than `docker exec` itself
and signals, the terminal and the exit status are docker's own.
"""

from __future__ import annotations

import os
import sys

from generator.cluster.targets import find_pod
from generator.runtime.errors import RuntimeFailure

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see runtime/paths.py)
if TYPE_CHECKING:
    from typing import NoReturn

    from generator.node.contract import Cluster


def shell(prompt: str, interactive: bool) -> list[str]:
    """A shell: on a terminal, interactive, its prompt naming where it runs (a pod has no
    hostname of its own); otherwise one that reads its commands from stdin."""
    if not interactive:
        return ["bash"]
    return ["env", f"PS1={prompt}:\\w# ", "bash", "--norc", "-i"]


def exec_argv(cluster: Cluster, target: str, command: list[str],
              interactive: bool) -> list[str]:
    """The `docker exec` command line for a node, a client or a pod; no command: a shell."""
    from generator.runtime.hostcli import member_cli

    flags = ["-i", "-t"] if interactive else ["-i"]
    for member in cluster["nodes"] + cluster["clients"]:
        if member["name"] == target:
            return [*member_cli(cluster, member["container"]), "exec", *flags, member["container"],
                    *(command or shell(target, interactive))]
    pod = find_pod(cluster["pods"], target)
    if pod is not None:
        node = next(n for n in cluster["nodes"] if n["name"] == pod["node"])
        return [*member_cli(cluster, node["container"]), "exec", *flags, node["container"],
                "ip", "netns", "exec", pod["name"],
                *(command or shell(f"{pod['name']}@{node['name']}", interactive))]
    names = [m["name"] for m in cluster["nodes"] + cluster["clients"] + cluster["pods"]]
    raise LookupError(f"no node, client or pod named {target!r} (known: {', '.join(names)}; "
                      "a pod is also NAMESPACE/POD)")


def exec_command(lab: str | None, target: str, command: list[str], interactive: bool) -> list[str]:
    """The `docker exec` command line for TARGET of the lab `-l LAB` means (a shell
    without a command). LabError (exit 2) for a bad lab file, LookupError (exit 2)
    for an unknown target, RuntimeFailure (exit 1) when the lab is not there."""
    from generator.runtime.locate import rendered_lab

    ref, cluster = rendered_lab(lab)
    argv = exec_argv(cluster, target, command, interactive)  # an unknown target first (exit 2)
    if not ref.is_up:
        raise RuntimeFailure(f"lab {ref.name} is not running; run `kgen up {ref.file_flag}`")
    return argv


def run_exec(argv: list[str]) -> NoReturn:
    """Become `docker exec`: its exit status is the command's; stdin is passed through."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        raise RuntimeFailure(f"cannot run {argv[0]}: {err.strerror}") from None
