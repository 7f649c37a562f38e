"""The docker CLI that reaches a member's engine, for a lab that spans hosts (lab
contract section 11), and the engines kgen has placed labs on.

On the path of `kgen exec`: imports nothing heavy (no `typing`, no Docker SDK).
A host's `docker` is a DOCKER_HOST value (`docker -H URL`) or a docker context
name (`docker --context NAME`). Which engines hold labs is read from the labels
on each engine; the only thing kept on this machine is the list of engines to
ask (ENGINES_FILE), which `kgen up` adds to and which names no lab.
"""

from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from generator.node.contract import Cluster


def cli(docker_value: str | None) -> list[str]:
    """The docker CLI reaching this engine (None: the local one, as `docker` finds it)."""
    if not docker_value:
        return ["docker"]
    return ["docker", "-H", docker_value] if "://" in docker_value else \
        ["docker", "--context", docker_value]


def member_cli(cluster: Cluster | None, container: str) -> list[str]:
    """The docker CLI reaching the engine a node or client runs on."""
    if cluster is None or "hosts" not in cluster:
        return ["docker"]
    engines = {h["name"]: h["docker"] for h in cluster["hosts"]}
    for member in [*cluster["nodes"], *cluster["clients"]]:
        host = member.get("host")
        if member["container"] == container and host in engines:
            return cli(engines[str(host)])
    return ["docker"]


def engines_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "kgen" / "engines"


def recorded_engines() -> list[str]:
    """The engines other than the local one that `kgen up` placed labs on."""
    try:
        lines = engines_file().read_text().splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines if line.strip()]


def record_engines(values: list[str]) -> None:
    known = recorded_engines()
    new = [v for v in values if v not in known]
    if new:
        path = engines_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{v}\n" for v in [*known, *new]))


def forget_engine(value: str) -> None:
    """An engine that holds no kgen lab any more is not asked again."""
    known = recorded_engines()
    if value in known:
        rest = [v for v in known if v != value]
        if rest:
            engines_file().write_text("".join(f"{v}\n" for v in rest))
        else:
            engines_file().unlink(missing_ok=True)
