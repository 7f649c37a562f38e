"""Running labs, found by name from any directory (docs/reference.md, "Which lab").

Every container and network of a lab carries labels rendered into its compose
file, as containerlab does: `kgen.lab` (the name), `kgen.dir` (the rendered
directory, absolute) and `kgen.file` (the lab file, absolute). The Docker
engine is therefore the one record of which labs run and where their files
are; nothing is kept on the side that could go stale. Labs started by an
older kgen lack `kgen.dir`: compose's own working-directory label stands in.

This module is on the path of `kgen exec`, which must start about as fast as
`docker exec` itself, so it does not import the Docker SDK (150 ms and more).
It asks the Engine API for the labelled objects with one HTTP GET on the local
unix socket (a few ms); where Docker is reached otherwise (DOCKER_HOST over
TCP or SSH, a docker context) or the socket does not answer, it runs the
`docker` CLI, which knows every way there is.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see runtime/paths.py)
if TYPE_CHECKING:
    from typing import Any, TypedDict

    from generator.node.contract import Cluster

    Where = tuple[Path | None, Path | None]  # (rendered directory, lab file)

    class Containers(TypedDict):
        running: int
        total: int

    class LabRow(TypedDict):
        """One lab of `kgen ls --json`."""

        name: str
        nodes: int
        pods: int | None
        clients: int | None
        state: str
        containers: Containers
        file: str | None
        dir: str | None

LAB_LABEL = "kgen.lab"
DIR_LABEL = "kgen.dir"
FILE_LABEL = "kgen.file"
ROLE_LABEL = "kgen.role"
COMPOSE_DIR_LABEL = "com.docker.compose.project.working_dir"
LAB_NAME = re.compile(r"[a-z][a-z0-9-]{0,19}")

# One line per object; fields split on a unit separator (paths may hold tabs).
SEP = "\x1f"
_FIELDS = (LAB_LABEL, DIR_LABEL, FILE_LABEL, COMPOSE_DIR_LABEL)
_LABELS = SEP.join(f'{{{{.Label "{key}"}}}}' for key in _FIELDS)
CONTAINER_FORMAT = f'{{{{.Names}}}}{SEP}{{{{.State}}}}{SEP}{{{{.Label "{ROLE_LABEL}"}}}}{SEP}{_LABELS}'
NETWORK_FORMAT = f"{{{{.Name}}}}{SEP}{_LABELS}"


class Member:
    """One container of a running lab."""

    __slots__ = ("name", "role", "state")

    def __init__(self, name: str, state: str, role: str) -> None:
        self.name = name
        self.state = state  # Docker's: running, exited, created, ...
        self.role = role  # node, client, or "" for a container without the role label

    def __repr__(self) -> str:
        return f"Member({self.name!r}, {self.state!r}, {self.role!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Member)
                and (other.name, other.state, other.role) == (self.name, self.state, self.role))

    def __hash__(self) -> int:
        return hash((self.name, self.state, self.role))


class RunningLab:
    """A lab that has containers or networks on the engine, and where its files are.

    (Plain classes here and in runtime/locate.py: `dataclasses` costs more at
    start-up than the rest of the exec path.)
    """

    def __init__(self, name: str, dir: Path | None = None, file: Path | None = None,
                 containers: list[Member] | None = None, networks: list[str] | None = None) -> None:
        self.name = name
        self.dir = dir
        self.file = file
        self.containers: list[Member] = containers if containers is not None else []
        self.networks: list[str] = networks if networks is not None else []

    def __repr__(self) -> str:
        return (f"RunningLab({self.name!r}, dir={self.dir!r}, file={self.file!r}, "
                f"containers={self.containers!r}, networks={self.networks!r})")

    @property
    def nodes(self) -> list[Member]:
        return [m for m in self.containers if m.role == "node"]

    @property
    def running(self) -> int:
        return sum(m.state == "running" for m in self.containers)


# How the docker CLI says it reached no engine (and where it looked).
_NO_ENGINE = re.compile(r"Cannot connect to the Docker daemon at (\S+?)\.?\s|error during connect")


def _docker(*args: str) -> list[list[str]]:
    """The lines `docker ARGS` prints, split on SEP; EngineUnreachable when it reaches no
    engine (the engine's socket did not answer either: this is the second way in)."""
    import subprocess

    from generator.runtime.errors import EngineUnreachable

    try:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        raise EngineUnreachable() from None
    if result.returncode != 0:
        said = _NO_ENGINE.search(result.stderr)
        if said:
            raise EngineUnreachable(said.group(1))
        return []
    return [line.split(SEP) for line in result.stdout.splitlines() if line.strip()]


def local_socket(env: dict[str, str] | None = None) -> str | None:
    """The engine's unix socket when the docker CLI would use it too, else None."""
    env = dict(os.environ) if env is None else env
    host = env.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return None
    if env.get("DOCKER_CONTEXT", "default") != "default":
        return None
    config = Path(env.get("DOCKER_CONFIG") or Path(env.get("HOME", "/")) / ".docker")
    try:
        context = json.loads((config / "config.json").read_text()).get("currentContext")
    except (OSError, ValueError, AttributeError):
        context = None
    if context not in (None, "", "default"):
        return None
    return host.removeprefix("unix://") or "/var/run/docker.sock"


def engine_get(socket_path: str, path: str, timeout: float = 10.0) -> Any:
    """GET `path` from the Engine API on a unix socket: the decoded JSON of a 200 answer,
    else None. HTTP/1.0, so the engine answers with a plain body and closes."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
    except OSError:
        return None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _api_rows(kind: str, selector: str, socket_path: str | None) -> list[list[str]] | None:
    """Containers or networks carrying `selector` (label=...), as the CLI rows below; None
    when the engine is not reached this way."""
    from urllib.parse import quote

    if socket_path is None:
        return None
    filters = quote(json.dumps({"label": [selector.removeprefix("label=")]}))
    path = (f"/containers/json?all=1&filters={filters}" if kind == "containers"
            else f"/networks?filters={filters}")
    found = engine_get(socket_path, path)
    if not isinstance(found, list):
        return None
    rows = []
    for item in found:
        labels = item.get("Labels") or {}
        where = [labels.get(key, "") for key in _FIELDS]
        if kind == "containers":
            names = item.get("Names") or [""]
            rows.append([names[0].lstrip("/"), item.get("State", ""), labels.get(ROLE_LABEL, ""),
                         *where])
        else:
            rows.append([item.get("Name", ""), *where])
    return rows


def _engine_rows(kind: str, selector: str, engine: str | None) -> list[list[str]]:
    """The rows of one engine: the local one (None) or a recorded host's."""
    socket_path = local_socket() if engine is None else \
        (engine.removeprefix("unix://") if engine.startswith("unix://") else None)
    rows = _api_rows(kind, selector, socket_path)
    if rows is not None:
        return rows
    prefix = [] if engine is None else \
        (["-H", engine] if "://" in engine else ["--context", engine])
    if kind == "containers":
        return _docker(*prefix, "ps", "-a", "--no-trunc", "--filter", selector, "--format",
                       CONTAINER_FORMAT)
    return _docker(*prefix, "network", "ls", "--filter", selector, "--format", NETWORK_FORMAT)


def _rows(kind: str, selector: str) -> list[list[str]]:
    """Every container (all states) or network carrying the label `selector`, on the local
    engine and on every engine `kgen up` placed a lab spanning hosts on."""
    from generator.runtime.errors import EngineUnreachable
    from generator.runtime.hostcli import recorded_engines

    rows = _engine_rows(kind, selector, None)
    for engine in recorded_engines():
        try:
            rows += _engine_rows(kind, selector, engine)
        except EngineUnreachable:  # a host that is away: its members are not listed
            continue
    return rows


def _path(value: str) -> Path | None:
    return Path(value) if value and value != "<no value>" else None


def _collect(rows: list[list[str]], labs: dict[str, RunningLab], dirs: dict[str, Counter[Where]],
             containers: bool) -> None:
    for row in rows:
        if containers:
            if len(row) != 3 + len(_FIELDS):
                continue
            name, state, role, lab, dir_label, file_label, compose_dir = row
        else:
            if len(row) != 1 + len(_FIELDS):
                continue
            name, lab, dir_label, file_label, compose_dir = row
            state = role = ""
        if not lab or lab == "<no value>":
            continue
        entry = labs.setdefault(lab, RunningLab(lab))
        if containers:
            entry.containers.append(Member(name, state, "" if role == "<no value>" else role))
        else:
            entry.networks.append(name)
        where = (_path(dir_label) or _path(compose_dir), _path(file_label))
        if where[0] is not None:
            dirs.setdefault(lab, Counter())[where] += 1


def running_labs(name: str | None = None, networks: bool = True) -> list[RunningLab]:
    """Every lab (or the one named) with containers or, with `networks`, networks on the engine."""
    selector = f"label={LAB_LABEL}" + (f"={name}" if name else "")
    return _labs(_rows("containers", selector), _rows("networks", selector) if networks else [])


def _labs(container_rows: list[list[str]], network_rows: list[list[str]]) -> list[RunningLab]:
    """The labs these rows describe. A lab's directory and file are the ones most of its
    objects carry (they all agree unless a lab was half replaced by hand)."""
    labs: dict[str, RunningLab] = {}
    dirs: dict[str, Counter[Where]] = {}
    _collect(container_rows, labs, dirs, containers=True)
    _collect(network_rows, labs, dirs, containers=False)
    for lab, counts in dirs.items():
        labs[lab].dir, labs[lab].file = counts.most_common(1)[0][0]
    for entry in labs.values():
        entry.containers.sort(key=lambda m: m.name)
    return [labs[k] for k in sorted(labs)]


def find_running(name: str) -> RunningLab | None:
    """The lab of that name if anything of it is on the engine (its networks are
    looked up only when it has no container: one `docker` call in the usual case)."""
    if not LAB_NAME.fullmatch(name):
        return None
    found = running_labs(name, networks=False) or running_labs(name, networks=True)
    return found[0] if found else None


def running_from_file(path: Path) -> RunningLab | None:
    """The running lab that was brought up from this lab file, if any."""
    return Snapshot().from_file(path)


class Snapshot:
    """Every lab on the engine, asked for once per command and handed to whoever needs it.

    Containers are listed at the first question (one GET, or one `docker ps`);
    networks only when a question needs them (a lab with no container left, or
    the full list); then every answer comes from what was read.
    """

    __slots__ = ("_containers", "_networks")

    def __init__(self) -> None:
        self._containers: list[list[str]] | None = None
        self._networks: list[list[str]] | None = None

    def labs(self, networks: bool = True) -> list[RunningLab]:
        """Every lab with containers (or, with `networks`, only networks) on the engine."""
        if self._containers is None:
            self._containers = _rows("containers", f"label={LAB_LABEL}")
        if networks and self._networks is None:
            self._networks = _rows("networks", f"label={LAB_LABEL}")
        return _labs(self._containers, self._networks or [])

    def find(self, name: str) -> RunningLab | None:
        """The lab of that name if anything of it is on the engine."""
        if not LAB_NAME.fullmatch(name):
            return None
        found = next((lab for lab in self.labs(networks=False) if lab.name == name), None)
        if found is None and self._networks is None:
            found = next((lab for lab in self.labs() if lab.name == name), None)
        return found

    def from_file(self, path: Path) -> RunningLab | None:
        """The running lab that was brought up from this lab file, if any."""
        wanted = path.resolve()
        return next((lab for lab in self.labs(networks=False) if lab.file == wanted), None)


def lab_state(lab: RunningLab, cluster: Cluster | None) -> str:
    """Ready, NotReady (some node agent not ready), Degraded (some container not
    running), Stopped (none running), Absent (only its network is left)."""
    if not lab.containers:
        return "Absent"
    if lab.running == 0:
        return "Stopped"
    if lab.running < len(lab.containers):
        return "Degraded"
    if cluster is None or lab.dir is None:
        return "Running"
    from generator.node.contract import read_node_states

    if "hosts" in cluster:  # a lab spanning hosts: its documents come through the engines
        from generator.runtime.hoststate import refresh_state

        refresh_state(cluster, lab.dir / "state", force=True)
    names = [n["name"] for n in cluster["nodes"]]
    docs = read_node_states(lab.dir / "state", names)
    ready = all(n in docs and docs[n].get("ready") and docs[n].get("generation") == cluster.get("generation")
                for n in names)
    return "Ready" if ready else "NotReady"


def describe(lab: RunningLab) -> LabRow:
    """One row of `kgen ls`: name, nodes, pods, clients, state, containers, file, dir."""
    from generator.runtime.paths import LabPaths

    cluster = LabPaths(lab.dir).cluster() if lab.dir else None
    if cluster is None or cluster.get("name") != lab.name:
        cluster = None
    return {
        "name": lab.name,
        "nodes": len(cluster["nodes"]) if cluster else len(lab.nodes),
        "pods": len(cluster["pods"]) if cluster else None,
        "clients": len(cluster["clients"]) if cluster else None,
        "state": lab_state(lab, cluster),
        "containers": {"running": lab.running, "total": len(lab.containers)},
        "file": str(lab.file) if lab.file else None,
        "dir": str(lab.dir) if lab.dir else None,
    }
