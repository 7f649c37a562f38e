"""`kgen logs --export DIR`: everything needed to debug a lab after it is gone,
as `kind export logs` does for a kind cluster.

One directory per node and client, named after it, of plain-text files: the
container's output, the agent's, proxy's and pods' logs (/var/log/kgen), the
datapath as the kernel has it (iptables-save, nft list ruleset, ip addr/route/
neigh, conntrack -L, each pod's namespace) and what the agent last published.
Beside them: `status --json`, cluster.json and the compose file.

Bounded in time: one `docker exec` per member (every command in it under
`timeout`), members side by side. A member that is not running still gives its
container output and its log files (`docker cp` works on stopped containers).
Everything is written by this process, so it belongs to the user who runs it.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from generator.node.contract import Cluster
from generator.node.documents import StatusReport, docker_cli
from generator.runtime.paths import LabPaths

LOG_DIR = "/var/log/kgen"  # generator.node.agent's and pods' logs, inside a member
COMMAND_TIMEOUT = 10  # seconds, each command inside a member (conntrack -L on a big table)
MEMBER_TIMEOUT = 90.0  # seconds, one member's whole collection
WORKERS = 8

# file → command, in the member's own network namespace
DATAPATH = [
    ("iptables-save.txt", "iptables-save"),
    ("nft-ruleset.txt", "nft list ruleset"),
    ("ip-addr.txt", "ip addr"),
    ("ip-link.txt", "ip -d link"),
    ("ip-route.txt", "ip route show table all"),
    ("ip-rule.txt", "ip rule"),
    ("ip-neigh.txt", "ip neigh"),
    ("bridge-fdb.txt", "bridge fdb show"),
    ("conntrack.txt", "conntrack -L"),
    ("netns.txt", "ip netns list"),
]
# file → command, in each pod's network namespace (pods/<pod>/ beside its logs)
POD_DATAPATH = [
    ("ip-addr.txt", "ip addr"),
    ("ip-route.txt", "ip route"),
    ("ip-neigh.txt", "ip neigh"),
    ("sockets.txt", "ss -tuanp"),
]


def collect_script() -> str:
    """The shell run in a member: every output into a fresh directory, then a tar of
    it (and of the log directory) on stdout. A command that fails or runs out of time
    leaves its output and a last line saying so."""
    def run(out: str, command: str, netns: str = "") -> str:
        return f'run "{out}" {"ip netns exec " + netns + " " if netns else ""}{command}'

    pods = "; ".join(run(f'$d/pods/$ns/{name}', command, '"$ns"')
                     for name, command in POD_DATAPATH)
    return "\n".join([
        'd=$(mktemp -d) || exit 1',
        f'run() {{ out=$1; shift; timeout {COMMAND_TIMEOUT} "$@" >"$out" 2>&1'
        ' || echo "# exit status $?" >>"$out"; }',
        *(run(f"$d/{name}", command) for name, command in DATAPATH),
        'for ns in $(ip netns list 2>/dev/null | cut -d" " -f1); do',
        f'  mkdir -p "$d/pods/$ns"; {pods}',
        'done',
        f'[ -d {LOG_DIR} ] && cp -R {LOG_DIR}/. "$d/"',
        'tar -C "$d" -cf - .',
        'status=$?; rm -rf "$d"; exit $status',
    ]) + "\n"


def extract(archive: bytes, dest: Path, strip: int = 0) -> int:
    """Regular files and directories of a tar, below `dest` only (no links, no `..`),
    written as this user; the first `strip` path parts dropped. Files written."""
    written = 0
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            parts = [p for p in PurePosixPath(member.name).parts if p not in ("", ".", "/")]
            parts = parts[strip:]
            if not parts or ".." in parts:
                continue
            target = dest.joinpath(*parts)
            try:
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile() and (source := tar.extractfile(member)) is not None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(source.read())
                    written += 1
            except OSError:  # a name taken by a file of another kind: keep the rest
                continue
    return written


def _docker(*args: str, timeout: float, cli: tuple[str, ...] = ("docker",)
            ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*cli, *args], capture_output=True, timeout=timeout)


def export_member(container: str, dest: Path, state: Path | None,
                  cli: tuple[str, ...] = ("docker",)) -> str | None:
    """Write one member's directory; a note when something could not be had."""
    dest.mkdir(parents=True, exist_ok=True)
    if state is not None and state.is_file():
        shutil.copyfile(state, dest / "state.json")
    try:
        return _collect(container, dest, cli)
    except subprocess.TimeoutExpired as err:
        command = " ".join(map(str, err.cmd[:3]))
        return f"{dest.name}: `{command}` took over {err.timeout:.0f} s; kept what came before"
    except OSError as err:  # no docker CLI, or a file that could not be written
        return f"{dest.name}: {err}"


def _collect(container: str, dest: Path, cli: tuple[str, ...]) -> str | None:
    inspected = _docker("inspect", container, timeout=MEMBER_TIMEOUT, cli=cli)
    if inspected.returncode != 0:
        (dest / "missing.txt").write_text(f"no container {container} on the engine\n")
        return f"{dest.name}: no container {container}"
    doc = json.loads(inspected.stdout)[0]
    (dest / "inspect.json").write_text(json.dumps(doc, indent=2) + "\n")
    logs = subprocess.run([*cli, "logs", "--timestamps", container], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=MEMBER_TIMEOUT)
    (dest / "container.log").write_bytes(logs.stdout)
    if doc["State"].get("Running"):
        got = _docker("exec", container, "sh", "-c", collect_script(), timeout=MEMBER_TIMEOUT,
                      cli=cli)
        strip = 0
    else:  # a stopped member's files: its logs, not its (gone) datapath
        got = _docker("cp", f"{container}:{LOG_DIR}", "-", timeout=MEMBER_TIMEOUT, cli=cli)
        strip = 1
        (dest / "not-running.txt").write_text(
            f"{container} was {doc['State'].get('Status')} at export: no datapath, logs only\n")
    if got.returncode != 0 or not got.stdout:
        why = got.stderr.decode(errors="replace").strip().splitlines()
        return f"{dest.name}: {why[-1] if why else 'nothing collected'}"
    extract(got.stdout, dest, strip)
    return None


def export_lab(paths: LabPaths, cluster: Cluster, status: StatusReport,
               out: Path) -> list[str]:
    """Write the whole export into `out` (new or empty); the notes, one per problem."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "status.json").write_text(json.dumps(status, indent=2) + "\n")
    for source in (paths.cluster_file, paths.compose_file):
        if source.is_file():
            shutil.copyfile(source, out / source.name)
    members: list[tuple[str, Path, Path | None]] = [
        (n["container"], out / n["name"], paths.state_dir / f"{n['name']}.json")
        for n in cluster["nodes"]]
    members += [(c["container"], out / c["name"], None) for c in cluster["clients"]]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(members) or 1)) as pool:
        notes = [n for n in pool.map(
            lambda m: export_member(m[0], m[1], m[2], tuple(docker_cli(cluster, m[0]))),
            members) if n]
    (out / "export.txt").write_text(
        f"kgen logs --export of lab {cluster['name']} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
        f" in {time.monotonic() - started:.1f} s\n" + "".join(f"{note}\n" for note in notes))
    return notes
