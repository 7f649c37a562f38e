"""`kgen logs --export`: what comes out of a member's tar lands below the export only."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from generator.runtime.export import DATAPATH, LOG_DIR, collect_script, extract


def _tar(entries: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """(name, content or None for a directory, link target or None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            elif content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_extract_keeps_files_and_directories_below_the_export(tmp_path: Path) -> None:
    dest = tmp_path / "node-0"
    archive = _tar([("./", None, None), ("./agent.log", b"started\n", None),
                    ("./pods/pod-0/web.log", b"serving\n", None),
                    ("../outside.txt", b"no\n", None), ("/etc/evil", b"no\n", None),
                    ("./pods/../../../up.txt", b"no\n", None),
                    ("./link", None, "/etc/passwd"), ("./empty", None, None)])
    assert extract(archive, dest) == 3
    found = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert found == ["node-0", "node-0/agent.log", "node-0/empty", "node-0/etc",
                     "node-0/etc/evil", "node-0/pods", "node-0/pods/pod-0",
                     "node-0/pods/pod-0/web.log"]
    assert (dest / "pods" / "pod-0" / "web.log").read_text() == "serving\n"


def test_extract_strips_the_leading_directory_of_docker_cp(tmp_path: Path) -> None:
    archive = _tar([("kgen/", None, None), ("kgen/agent.log", b"x\n", None)])
    assert extract(archive, tmp_path, strip=1) == 1
    assert (tmp_path / "agent.log").read_text() == "x\n"


def test_collect_script_writes_every_output_and_says_what_failed(tmp_path: Path) -> None:
    """The member's script, run here by sh with stub commands: every file is there,
    and a failing command leaves its exit status in its file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("iptables-save", "nft", "ip", "bridge", "conntrack"):
        body = "exit 3" if name == "conntrack" else 'echo "$0 $*"'
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "log" / "pods").mkdir(parents=True)
    (tmp_path / "log" / "agent.log").write_text("agent\n")
    script = (collect_script().replace("ip netns list 2>/dev/null", "true")
              .replace(LOG_DIR, str(tmp_path / "log")))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    extract(done.stdout, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [name for name, _ in DATAPATH] + ["agent.log", "pods"])
    assert (out / "ip-route.txt").read_text() == f"{bin_dir}/ip route show table all\n"
    assert (out / "conntrack.txt").read_text() == "# exit status 3\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tmp.")] == []  # cleaned up


@pytest.fixture
def no_running_labs(monkeypatch: pytest.MonkeyPatch) -> None:
    from generator.runtime import registry

    monkeypatch.setattr(registry, "_rows", lambda kind, selector: [])


@pytest.mark.parametrize(("args", "message"), [
    (["logs"], "kgen: give a POD, or --export DIR for the whole lab"),
    (["logs", "pod-0", "--export", "out"],
     "kgen: --export takes the whole lab: give no POD, -c, -f or --tail"),
    (["logs", "--export", "out", "--tail", "5"],
     "kgen: --export takes the whole lab: give no POD, -c, -f or --tail"),
])
def test_logs_arguments_that_do_not_fit_are_one_line_and_exit_2(
        args: list[str], message: str, no_running_labs: None) -> None:
    from typer.testing import CliRunner

    from generator.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message


def test_export_of_a_lab_never_brought_up_says_so(tmp_path: Path, no_running_labs: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from generator.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.yaml").write_text("name: never\nnodes: [n0]\n")
    result = CliRunner().invoke(app, ["logs", "--export", "out"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "kgen: error: lab never is not running; run `kgen up -l lab.yaml`"
    assert not (tmp_path / "out").exists()


def test_a_name_taken_by_another_kind_of_file_is_skipped(tmp_path: Path) -> None:
    archive = _tar([("./a", b"file\n", None), ("./a/b", b"under a file\n", None),
                    ("./c.txt", b"kept\n", None)])
    assert extract(archive, tmp_path) == 2
    assert (tmp_path / "a").read_text() == "file\n" and (tmp_path / "c.txt").read_text() == "kept\n"


def test_a_member_that_hangs_costs_at_most_the_timeout(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A stub `docker` whose exec never returns: the member's directory keeps what came
    before (inspect, container output) and the note says what took too long."""
    from generator.runtime import export

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        '#!/bin/sh\ncase "$1" in\n'
        '  inspect) echo \'[{"Name": "/kgen-x-n0", "State": {"Running": true}}]\';;\n'
        '  logs) echo "agent started";;\n'
        '  exec) exec sleep 30;;\nesac\n')
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(export, "MEMBER_TIMEOUT", 1.0)
    note = export.export_member("kgen-x-n0", tmp_path / "n0", None)
    assert note == "n0: `docker exec kgen-x-n0` took over 1 s; kept what came before"
    assert (tmp_path / "n0" / "container.log").read_text() == "agent started\n"
    assert sorted(p.name for p in (tmp_path / "n0").iterdir()) == ["container.log", "inspect.json"]
