"""The command line through typer's CliRunner (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from generator.cli import app
from tests.conftest import GOLDEN, ROOT

runner = CliRunner()


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


@pytest.mark.parametrize("command", ["render", "up", "down", "status", "apply"])
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
