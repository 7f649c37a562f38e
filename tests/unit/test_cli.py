"""The command line through typer's CliRunner (no Docker needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from generator.cli import app
from tests.conftest import GOLDEN, ROOT

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_running_labs(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests never see the labs that may run on this machine's engine."""
    from generator.runtime import registry

    monkeypatch.setattr(registry, "_rows", lambda kind, selector: [])


def test_render_without_arguments_renders_the_demo(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["render"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "kgen-demo")
    assert (tmp_path / "kgen-demo" / "docker-compose.yml").is_file()


def test_render_prefers_lab_yaml_in_the_current_directory(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.yaml").write_text("name: mine\nnodes: [n0]\n")
    result = runner.invoke(app, ["render"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "kgen-mine" / "config" / "cluster.json").is_file()


def test_render_to_a_chosen_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", "-l", "demo", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "docker-compose.yml").is_file()


# `down` is not here: it takes a lab down by its name even when its file no longer
# validates (issue 10), warning about the file; see test_down_warns_about_a_bad_lab_file.
@pytest.mark.parametrize("command", ["render", "up", "status", "apply", "check"])
def test_bad_lab_exits_2_with_one_line_and_no_traceback(command: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = GOLDEN / "bad-labs" / "nodeport-range.yaml"
    result = runner.invoke(app, [command, "-l", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "services[1].ports[0].nodePort: 40000 is outside 30000-32767" in result.stderr
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir()), "nothing is created for a bad lab"


def test_three_errors_print_three_lines_and_create_nothing(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["render", "-l", str(GOLDEN / "bad-labs" / "three-errors.yaml")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("kgen: ") and "three-errors.yaml: " in line for line in lines)
    assert not list(tmp_path.iterdir())


def test_unknown_lab_name_is_a_bad_lab() -> None:
    result = runner.invoke(app, ["render", "-l", "no-such-lab"])
    assert result.exit_code == 2
    assert "no-such-lab: no such lab file" in result.stderr
    assert "demo" in result.stderr


def test_exec_unknown_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["render"]).exit_code == 0
    result = runner.invoke(app, ["exec", "nobody", "--", "true"])
    assert result.exit_code == 2
    assert "no node, client or pod named 'nobody'" in result.stderr


def test_exec_command_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from generator.runtime.execute import exec_argv
    from tests.unit.conftest import render_lab

    cluster = render_lab(ROOT / "labs" / "demo.yaml", tmp_path)
    assert exec_argv(cluster, "node-1", ["ip", "r"], False) == [
        "docker", "exec", "-i", "kgen-demo-node-1", "ip", "r"]
    assert exec_argv(cluster, "pod-2", ["ip", "a"], False) == [
        "docker", "exec", "-i", "kgen-demo-node-1", "ip", "netns", "exec", "pod-2", "ip", "a"]
    assert exec_argv(cluster, "client-0", ["true"], True)[:4] == [
        "docker", "exec", "-i", "-t"]
    # No command: a shell, interactive with a prompt naming the pod on a terminal,
    # else one reading its commands from stdin.
    assert exec_argv(cluster, "pod-2", [], True) == [
        "docker", "exec", "-i", "-t", "kgen-demo-node-1", "ip", "netns", "exec", "pod-2",
        "env", "PS1=pod-2@node-1:\\w# ", "bash", "--norc", "-i"]
    assert exec_argv(cluster, "node-0", [], False) == [
        "docker", "exec", "-i", "kgen-demo-node-0", "bash"]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def __call__(self, client: object, name: str, paths: object) -> list[str]:
        self.calls.append((name, paths))
        return [f"container kgen-{name}-n0"]


@pytest.fixture
def fake_down(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """`kgen down` without touching an engine: what it would remove, recorded."""
    from generator.runtime import down, engine

    recorder = Recorder()
    monkeypatch.setattr(engine, "docker_client", lambda: object())
    monkeypatch.setattr(down, "down", recorder)
    return recorder


def test_down_warns_about_a_bad_lab_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         fake_down: Recorder) -> None:
    monkeypatch.chdir(tmp_path)
    bad = GOLDEN / "bad-labs" / "nodeport-range.yaml"
    result = runner.invoke(app, ["down", "-l", str(bad)])
    assert result.exit_code == 0, result.output
    assert "services[1].ports[0].nodePort: 40000 is outside 30000-32767" in result.stderr
    assert "taking lab" in result.stderr and "down by its name" in result.stderr
    assert [name for name, _ in fake_down.calls] == [yaml_name(bad)]


def yaml_name(path: Path) -> str:
    import yaml

    return yaml.safe_load(path.read_text())["name"]


def test_down_by_name_needs_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    fake_down: Recorder) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["down", "gone"], ["down", "-l", "gone"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == "lab gone is down"
    assert [name for name, _ in fake_down.calls] == ["gone", "gone"]
    both = runner.invoke(app, ["down", "a", "-l", "b"])
    assert both.exit_code == 2


def test_down_all_takes_every_lab_down(monkeypatch: pytest.MonkeyPatch, fake_down: Recorder) -> None:
    from generator.runtime import registry

    monkeypatch.setattr(registry, "running_labs", lambda: [
        registry.RunningLab("a", Path("/x/kgen-a")), registry.RunningLab("b")])
    result = runner.invoke(app, ["down", "--all"])
    assert result.exit_code == 0, result.output
    assert [(name, getattr(paths, "root", None)) for name, paths in fake_down.calls] == [
        ("a", Path("/x/kgen-a")), ("b", None)]
    monkeypatch.setattr(registry, "running_labs", lambda: [])
    nothing = runner.invoke(app, ["down", "--all"])
    assert nothing.exit_code == 0 and nothing.stdout.strip() == "no kgen lab is running"
    assert runner.invoke(app, ["down", "--all", "-l", "a"]).exit_code == 2


def test_ls_lists_running_labs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from generator.runtime import registry

    lab = registry.RunningLab("a", tmp_path / "kgen-a", tmp_path / "a.yaml",
                              [registry.Member("kgen-a-n0", "running", "node")], ["kgen-a"])
    monkeypatch.setattr(registry, "running_labs", lambda: [lab])
    result = runner.invoke(app, ["ls", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{
        "name": "a", "nodes": 1, "pods": None, "clients": None, "state": "Running",
        "containers": {"running": 1, "total": 1}, "file": str(tmp_path / "a.yaml"),
        "dir": str(tmp_path / "kgen-a")}]
    table = runner.invoke(app, ["ls"])
    assert table.exit_code == 0
    assert table.stdout.splitlines()[1].split() == [
        "a", "1", "-", "Running", str(tmp_path / "a.yaml"), str(tmp_path / "kgen-a")]
    monkeypatch.setattr(registry, "running_labs", lambda: [])
    assert runner.invoke(app, ["ls"]).stdout.strip() == "no kgen lab is running"
    assert json.loads(runner.invoke(app, ["ls", "--json"]).stdout) == []


def test_status_of_a_lab_that_is_not_there_says_how_to_start_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from generator.runtime import engine

    monkeypatch.setattr(engine, "docker_client", lambda: None)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "lab demo: nothing rendered or running; start it with `kgen up -l demo`")


def test_version_and_short_help() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"kgen {version('kgen')}"
    for args in (["-h"], ["up", "-h"], ["exec", "-h"]):
        shown = runner.invoke(app, args)
        assert shown.exit_code == 0 and "Usage" in shown.stdout, args
        assert shown.stdout == runner.invoke(app, [*args[:-1], "--help"]).stdout


def test_completion_is_offered() -> None:
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.stdout


def test_exec_without_a_lab_says_how_to_start_it(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["exec", "pod-0", "--", "true"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "kgen: error: lab demo is not running; run `kgen up -l demo`"


def test_shell_completion_offers_the_labs_members(tmp_path: Path) -> None:
    """Through the installed console script, as bash asks it (typer's protocol)."""
    import os
    import shutil
    import subprocess
    import sys

    beside = Path(sys.executable).with_name("kgen")
    kgen = str(beside) if beside.exists() else shutil.which("kgen")
    if kgen is None:
        pytest.skip("no kgen console script installed")
    (tmp_path / "lab.yaml").write_text(
        "name: comp\nnodes: [n0, n1]\npods: [{name: p0, node: n0}]\nclients: [c0]\n")
    assert runner.invoke(app, ["render", "-l", str(tmp_path / "lab.yaml"),
                               "-o", str(tmp_path / "kgen-comp")]).exit_code == 0

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_KGEN_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split(" ")) - 1)}
        result = subprocess.run([kgen], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60)
        return result.stdout.split()

    # The DNS pods are pods of the lab too (kube-system), exec targets like the rest.
    assert complete("kgen exec -l lab.yaml ") == ["n0", "n1", "p0", "coredns-0", "coredns-1", "c0"]
    assert complete("kgen exec -l lab.yaml p") == ["p0"]
    assert "lab.yaml" in complete("kgen status -l ")
    assert "demo" in complete("kgen status -l d")


def test_a_node_network_taken_meanwhile_is_chosen_afresh(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Labs coming up side by side: the /24 chosen for one may be taken before its
    network is created; `up` then renders the lab on another free /24 (bounded attempts)."""
    from generator.lab.model import load_lab
    from generator.render.files import render
    from generator.runtime import create, networks, up
    from generator.runtime.errors import NetworkTaken
    from generator.runtime.paths import LabPaths
    from tests.unit.conftest import desired

    model = load_lab(ROOT / "labs" / "demo.yaml")
    first = desired(model)
    tried: list[str] = []

    def ensure_network(client: object, spec: create.NetworkSpec) -> bool:
        tried.append(spec.subnet)
        if len(tried) == 1:
            raise NetworkTaken("Pool overlaps with other one on this address space")
        return True

    class Quiet:
        def say(self, message: str) -> None:
            pass

    monkeypatch.setattr(create, "ensure_network", ensure_network)
    monkeypatch.setattr(networks, "desired_cluster",
                        lambda lab, out: {**first, "nodeNetwork": "172.31.9.0/24"})
    run = up.UpRun(ref=None, model=model, report=Quiet())  # type: ignore[arg-type]
    run.paths, run.cluster = LabPaths(tmp_path), render(model, first, tmp_path)
    up.network(run)
    assert tried == [first["nodeNetwork"], "172.31.9.0/24"]
    assert run.cluster["nodeNetwork"] == "172.31.9.0/24"
    assert json.loads((tmp_path / "config" / "cluster.json").read_text())["nodeNetwork"] == (
        "172.31.9.0/24")
    # Bounded: after the last attempt the failure is raised.
    monkeypatch.setattr(create, "ensure_network", lambda client, spec: (_ for _ in ()).throw(
        NetworkTaken("Pool overlaps with other one on this address space")))
    monkeypatch.setattr(up, "NETWORK_ATTEMPTS", 2)
    with pytest.raises(NetworkTaken):
        up.network(run)
