"""What nodes write into a lab's directory belongs to the user who ran `kgen up`.

A node agent is root in its container; the rendered `state/` is bind-mounted
into it. Here the test process plays the agent (root, the same node-side
writers) and an unprivileged user (nobody) plays the GitHub runner's user who
rendered the lab: after `kgen down`'s removal of the state and `rm -rf` of the
lab directory, as that user, nothing is left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.node.contract import heartbeat_path, renew_heartbeat, write_json_atomic

NOBODY = 65534


@pytest.fixture
def user_lab() -> Iterator[Path]:
    """A rendered lab directory owned by an unprivileged user, in a directory it can reach."""
    if os.geteuid() != 0:
        pytest.skip("plays a node agent, which is root in its container: needs root")
    top = Path(tempfile.mkdtemp(prefix="kgen-owner-", dir="/tmp"))  # TMPDIR may be out of reach
    lab = top / "kgen-owner"
    (lab / "state").mkdir(parents=True)
    (lab / "docker-compose.yml").write_text("services: {}\n")
    for path in (top, lab, lab / "state", lab / "docker-compose.yml"):
        os.chown(path, NOBODY, NOBODY)
    try:
        yield lab
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_user(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), user=NOBODY, group=NOBODY, extra_groups=[],
                          capture_output=True, text=True, timeout=60, cwd="/")


def skip_unless_the_user_runs_kgen() -> None:
    """The interpreter must be one the unprivileged user may run (pyenv's under /root
    is not; .ci/run builds .venv with one it can)."""
    try:
        probe = as_user(sys.executable, "-c", "import generator.runtime.down")
    except PermissionError as err:
        pytest.skip(f"an unprivileged user cannot run {sys.executable}: {err}")
    if probe.returncode != 0:
        pytest.skip(f"an unprivileged user cannot run {sys.executable} with kgen "
                    f"(.ci/run builds .venv with one it can): {probe.stderr.strip()[-200:]}")


def agent_writes(state: Path) -> None:
    """What every agent writes: its published document and its heartbeat (created, renewed)."""
    for node in ("node-0", "node-1"):
        write_json_atomic(state / f"{node}.json", {"node": node, "ready": True})
        renew_heartbeat(state, node)
        renew_heartbeat(state, node)
    write_json_atomic(state / "node-0.json", {"node": "node-0", "ready": False})  # replaced


def test_node_written_state_belongs_to_the_lab_directory_owner(user_lab: Path) -> None:
    agent_writes(user_lab / "state")
    owners = {(p.relative_to(user_lab).as_posix(), p.lstat().st_uid, p.lstat().st_gid)
              for p in user_lab.rglob("*")}
    assert {path for path, *_ in owners} == {
        "docker-compose.yml", "state", "state/node-0.json", "state/node-1.json",
        "state/heartbeat", "state/heartbeat/node-0", "state/heartbeat/node-1"}
    assert {(uid, gid) for _, uid, gid in owners} == {(NOBODY, NOBODY)}


def test_down_then_rm_rf_by_the_user_leaves_nothing(user_lab: Path) -> None:
    agent_writes(user_lab / "state")
    skip_unless_the_user_runs_kgen()
    down = as_user(sys.executable, "-c", "import sys; from pathlib import Path; "
                   "from generator.runtime.down import remove_state; "
                   "remove_state(Path(sys.argv[1]), None)", str(user_lab / "state"))
    assert down.returncode == 0, down.stderr
    assert not (user_lab / "state").exists()
    removed = as_user("rm", "-rf", str(user_lab))
    assert removed.returncode == 0, removed.stderr
    assert not user_lab.exists()


def test_a_file_a_node_left_as_root_is_what_the_user_cannot_remove(user_lab: Path) -> None:
    """The counter-check: without the agent's hand-over, the user's rm -rf fails
    (what an older kgen left: `kgen down` then removes it through a container)."""
    state = user_lab / "state"
    heartbeat_path(state, "node-0").parent.mkdir()
    heartbeat_path(state, "node-0").touch()
    removed = as_user("rm", "-rf", str(state))
    assert removed.returncode != 0
    assert "Permission denied" in removed.stderr
    assert heartbeat_path(state, "node-0").exists()


def test_down_says_in_one_line_what_it_cannot_remove_without_an_engine(user_lab: Path) -> None:
    state = user_lab / "state"
    heartbeat_path(state, "node-0").parent.mkdir()
    heartbeat_path(state, "node-0").touch()  # root's, as an older kgen's node left it
    skip_unless_the_user_runs_kgen()
    down = as_user(sys.executable, "-c", "import sys; from pathlib import Path; "
                   "from generator.runtime.down import remove_state; "
                   "remove_state(Path(sys.argv[1]), None)", str(state))
    assert down.returncode == 1
    assert down.stderr.strip().splitlines()[-1] == (
        f"generator.runtime.errors.RuntimeFailure: cannot remove {state}: a lab node wrote "
        "files there as root, and no Docker engine to remove them; "
        f"remove it with `sudo rm -rf {state}`")


def test_a_permission_problem_names_the_path_and_whose_it_is(tmp_path: Path) -> None:
    from generator.cli.app import permission_problem

    missing = tmp_path / "kgen-lab" / "config"
    problem = permission_problem(PermissionError(13, "Permission denied", str(missing)))
    assert problem == (f"permission denied: {missing} ({tmp_path} belongs to uid "
                       f"{os.getuid()}; kgen runs as uid {os.geteuid()})")
    assert permission_problem(PermissionError(13, "Permission denied")) == (
        "permission denied (Permission denied)")
