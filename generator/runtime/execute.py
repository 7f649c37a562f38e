"""`kgen exec`: a command in a node, a client or a pod's network namespace.

Deliberately light: no Docker SDK, so that `kgen exec` starts as fast as
`docker exec` itself.
"""

from __future__ import annotations

import subprocess
from typing import Any


def exec_argv(cluster: dict[str, Any], target: str, command: list[str],
              interactive: bool) -> list[str]:
    """The `docker exec` command line for a node, a client or a pod."""
    flags = ["-i", "-t"] if interactive else ["-i"]
    for member in cluster["nodes"] + cluster["clients"]:
        if member["name"] == target:
            return ["docker", "exec", *flags, member["container"], *command]
    for pod in cluster["pods"]:
        if pod["name"] == target:
            node = next(n for n in cluster["nodes"] if n["name"] == pod["node"])
            return ["docker", "exec", *flags, node["container"],
                    "ip", "netns", "exec", pod["name"], *command]
    names = [m["name"] for m in cluster["nodes"] + cluster["clients"] + cluster["pods"]]
    raise LookupError(f"no node, client or pod named {target!r} (known: {', '.join(names)})")


def run_exec(argv: list[str]) -> int:
    """The command's own exit status; stdin is passed through (`docker exec -i`)."""
    return subprocess.call(argv)
