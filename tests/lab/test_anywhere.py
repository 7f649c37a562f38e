"""Issue 10: a running lab is found from any directory and is never silently broken.

Each test is one bug of the issue's "Why", on a real (small) lab: commands from
another directory act on the running lab; another lab file of the same name
does not replace it unless `--force`; an edited podCIDR is refused by `up`
instead of half applied; a lab whose file no longer validates, or is gone, is
still taken down; SIGINT during `up` says what was left and how to clean it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.conftest import KGEN, PREFIX, RunningLab, bring_up, kgen, labelled

LAB: dict[str, Any] = {
    "name": "anywhere",
    "nodes": ["node-0", "node-1"],
    "pods": [{"name": "pod-0", "node": "node-0", "labels": {"app": "web"}},
             {"name": "pod-1", "node": "node-1", "labels": {"app": "web"}}],
    "services": [{"name": "web", "selector": {"app": "web"},
                  "ports": [{"port": 80, "targetPort": 8080}]}],
    "clients": ["client-0"],
}


def named(base: str) -> str:
    return f"{PREFIX}{base}"[:20]


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def started_at(name: str) -> dict[str, str]:
    import docker

    client = docker.from_env()
    return {c.name: c.attrs["State"]["StartedAt"]
            for c in client.containers.list(all=True, filters={"label": f"kgen.lab={name}"})}


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def anywhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    home = tmp_path_factory.mktemp("home")
    yield from bring_up(write(home / "lab.yaml", LAB), home)


def test_commands_from_another_directory_act_on_the_running_lab(anywhere: RunningLab,
                                                                 tmp_path: Path) -> None:
    name = anywhere.name
    status = json.loads(kgen("status", "-l", name, "--json", cwd=tmp_path).stdout)
    assert status == anywhere.status()
    assert [n["state"] for n in status["nodes"]] == ["Ready", "Ready"]
    assert kgen("exec", "-l", name, "pod-0", "--", "true", cwd=tmp_path).returncode == 0
    pod_ip = next(p["ip"] for p in status["pods"] if p["name"] == "pod-0")
    shown = kgen("exec", "-l", name, "pod-0", "--", "ip", "-br", "-4", "addr", "show", "eth0",
                 cwd=tmp_path).stdout
    assert f"{pod_ip}/" in shown
    checked = kgen("check", "-l", name, cwd=tmp_path)
    assert re.search(r"^\d+ passed, 0 failed in [\d.]+ s$", checked.stdout.strip(), re.M)
    listed = {lab["name"]: lab for lab in json.loads(kgen("ls", "--json", cwd=tmp_path).stdout)}
    assert listed[name] == {
        "name": name, "nodes": 2, "pods": 4, "clients": 1, "state": "Ready",  # 2 + the DNS's 2
        "containers": {"running": 3, "total": 3},
        "file": str(anywhere.lab_file.resolve()),
        "dir": str((anywhere.dir / f"kgen-{name}").resolve())}
    assert list(tmp_path.iterdir()) == [], "nothing is rendered in the other directory"


def test_the_engine_api_and_the_docker_cli_list_the_same_objects(anywhere: RunningLab) -> None:
    """kgen reads labels over the engine's socket (fast) and falls back to the CLI: both agree."""
    from generator.runtime import registry

    selector = f"label=kgen.lab={anywhere.name}"
    cli = {"containers": registry._docker("ps", "-a", "--no-trunc", "--filter", selector,
                                          "--format", registry.CONTAINER_FORMAT),
           "networks": registry._docker("network", "ls", "--filter", selector,
                                        "--format", registry.NETWORK_FORMAT)}
    for kind, rows in cli.items():
        api = registry._api_rows(kind, selector, registry.local_socket())
        assert api is not None, "the local engine answers on its socket"
        shown = sorted([["" if f == "<no value>" else f for f in row] for row in rows])
        assert sorted(api) == shown and len(shown) == (3 if kind == "containers" else 1)


def test_exec_without_a_command_opens_a_shell_in_the_pod(anywhere: RunningLab,
                                                         tmp_path: Path) -> None:
    status = anywhere.status()
    pod_ip = next(p["ip"] for p in status["pods"] if p["name"] == "pod-1")
    shell = subprocess.run([*KGEN, "exec", "-l", anywhere.name, "pod-1"], cwd=tmp_path,
                           input="echo answer=$((6*7))\nip -br -4 addr show eth0\nexit 3\n",
                           capture_output=True, text=True, timeout=60)
    assert shell.returncode == 3, shell.stderr
    assert "answer=42" in shell.stdout and f"{pod_ip}/" in shell.stdout


def test_up_of_another_file_with_the_same_name_refuses(anywhere: RunningLab,
                                                       tmp_path: Path) -> None:
    before = started_at(anywhere.name)
    other = write(tmp_path / "lab.yaml", yaml.safe_load(anywhere.lab_file.read_text()))
    result = kgen("up", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert one_line(result) == (
        f"kgen: lab {anywhere.name} is already running from {anywhere.lab_file.resolve()} "
        f"(directory {(anywhere.dir / f'kgen-{anywhere.name}').resolve()}); take it down with "
        f"`kgen down -l {anywhere.name}`, or replace it with `kgen up -l lab.yaml --force`")
    assert started_at(anywhere.name) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name], "nothing rendered"
    applied = kgen("apply", cwd=tmp_path, check=False)  # nor applied to the running lab
    assert applied.returncode == 1
    assert one_line(applied) == (
        f"kgen: lab {anywhere.name} runs from {anywhere.lab_file.resolve()}, not from lab.yaml; "
        "apply edits to that file, or replace the lab with `kgen up -l lab.yaml --force`")
    assert started_at(anywhere.name) == before


def test_up_of_the_same_file_from_another_directory_changes_nothing(anywhere: RunningLab,
                                                                     tmp_path: Path) -> None:
    before, status = started_at(anywhere.name), anywhere.status()
    kgen("up", "-l", str(anywhere.lab_file.resolve()), cwd=tmp_path)
    assert started_at(anywhere.name) == before
    assert anywhere.status() == status
    assert list(tmp_path.iterdir()) == []


def edited(lab: RunningLab, change: dict[str, Any]) -> str:
    """The lab file's text before `change` is written into it."""
    text = lab.lab_file.read_text()
    write(lab.lab_file, {**yaml.safe_load(text), **change})
    return text


def test_an_edited_pod_cidr_is_refused_by_up(anywhere: RunningLab) -> None:
    before, status = started_at(anywhere.name), anywhere.status()
    original = edited(anywhere, {"podCIDR": "10.245.0.0/16"})
    try:
        result = anywhere.kgen("up", check=False)
    finally:
        anywhere.lab_file.write_text(original)
    assert result.returncode == 1
    name, path = anywhere.name, anywhere.lab_file
    assert one_line(result) == (
        f"kgen: {path}: podCIDR 10.244.0.0/16 -> 10.245.0.0/16 changed since lab {name} came up, "
        f"which `kgen apply` cannot change: run `kgen down -l {name}` then `kgen up -l {path.name}` "
        f"(or `kgen up -l {path.name} --force`)")  # the hints name the file from where up ran
    assert started_at(name) == before and anywhere.status() == status


def test_pod_edits_are_applied_by_up_without_restarting_nodes(anywhere: RunningLab) -> None:
    before = started_at(anywhere.name)
    pods = [*LAB["pods"], {"name": "pod-2", "node": "node-1", "labels": {"app": "web"}}]
    original = edited(anywhere, {"pods": pods})
    try:
        anywhere.kgen("up")
        added = next(p for p in anywhere.status()["pods"] if p["name"] == "pod-2")
        assert added["state"] == "Running" and added["ip"].startswith("10.244.1.")
    finally:
        anywhere.lab_file.write_text(original)
        anywhere.kgen("up")
    # The removed pod drains for its grace period (Terminating, as kubelet's would);
    # kube-system's DNS pods are the lab's own.
    states = {p["name"]: p["state"] for p in anywhere.status()["pods"]
              if p["namespace"] != "kube-system"}
    assert [name for name, state in states.items() if state != "Terminating"] == ["pod-0", "pod-1"]
    assert states.get("pod-2", "Terminating") == "Terminating"
    assert started_at(anywhere.name) == before


def small_lab(base: str, **extra: Any) -> dict[str, Any]:
    return {"name": named(base), "nodes": ["node-0"], **extra}


def test_force_replaces_a_lab_running_from_another_directory(tmp_path: Path) -> None:
    first = write(tmp_path / "a" / "lab.yaml", small_lab("replace"))
    second = write(tmp_path / "b" / "lab.yaml",
                   small_lab("replace", pods=[{"name": "pod-0", "node": "node-0"}]))
    name = named("replace")
    try:
        kgen("up", cwd=first.parent)
        assert kgen("up", cwd=second.parent, check=False).returncode == 1
        replaced = kgen("up", "--force", cwd=second.parent)
        assert f"replaced lab {name} (running from {first.resolve()})" in replaced.stderr
        listed = {lab["name"]: lab for lab in json.loads(kgen("ls", "--json", cwd=tmp_path).stdout)}
        assert listed[name]["file"] == str(second.resolve())
        assert listed[name]["dir"] == str((second.parent / f"kgen-{name}").resolve())
        assert listed[name]["pods"] == 3 and listed[name]["state"] == "Ready"  # 1 + the DNS's 2
        assert not (first.parent / f"kgen-{name}" / "state").exists()
    finally:
        kgen("down", name, cwd=tmp_path, check=False)
    assert labelled(name) == []


def test_down_with_a_lab_file_that_no_longer_parses(tmp_path: Path) -> None:
    lab = write(tmp_path / "lab.yaml", small_lab("downbad"))
    name = named("downbad")
    try:
        kgen("up", cwd=tmp_path)
        lab.write_text("name: [\n")  # edited into something that is not even YAML
        result = kgen("down", cwd=tmp_path)
        assert result.stderr.startswith("kgen: warning: lab.yaml: ")
        assert f"taking lab {name} down by its name" in result.stderr
        assert result.stdout.strip() == f"lab {name} is down"
        assert labelled(name) == []
        again = kgen("down", cwd=tmp_path)  # nothing records the file any more: nothing to do
        assert again.stdout.strip() == "nothing to take down for lab.yaml"
    finally:
        kgen("down", name, cwd=tmp_path, check=False)


def test_down_by_name_from_anywhere_needs_no_file(tmp_path: Path) -> None:
    lab = write(tmp_path / "a" / "lab.yaml", small_lab("downname"))
    elsewhere = tmp_path / "b"
    elsewhere.mkdir()
    name = named("downname")
    try:
        kgen("up", cwd=lab.parent)
        lab.unlink()
        first = kgen("down", name, cwd=elsewhere)
        assert first.stdout.strip() == f"lab {name} is down"
        assert labelled(name) == []
        assert not (lab.parent / f"kgen-{name}" / "state").exists()
        second = kgen("down", "-l", name, cwd=elsewhere)
        assert second.stdout.strip() == f"lab {name} is down (nothing was running)"
    finally:
        kgen("down", name, cwd=tmp_path, check=False)


def node_running(name: str) -> bool:
    import docker

    client = docker.from_env()
    running = client.containers.list(filters={"label": f"kgen.lab={name}", "status": "running"})
    return bool(running) and bool(client.networks.list(filters={"label": f"kgen.lab={name}"}))


def test_sigint_during_up_says_what_was_left_and_how_to_clean_it(tmp_path: Path) -> None:
    # A pod whose only container exits at once never becomes Running: `up` is certainly
    # still waiting for it when the signal comes, once the node container exists.
    write(tmp_path / "lab.yaml", small_lab("sigint", pods=[
        {"name": "pod-0", "node": "node-0", "containers": [{"name": "c", "command": ["false"]}]}]))
    name = named("sigint")
    up = subprocess.Popen([*KGEN, "up"], cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not node_running(name):
            assert up.poll() is None, up.communicate()
            assert time.monotonic() < deadline, "the lab's containers never appeared"
            time.sleep(0.2)
        up.send_signal(signal.SIGINT)
        _, stderr = up.communicate(timeout=60)
        assert up.returncode == 130
        assert stderr.strip().splitlines()[-1] == (
            f"kgen: interrupted; lab {name} was left behind (1 container(s), 1 running; "
            f"network kgen-{name}); remove it with `kgen down -l {name}`")
    finally:
        if up.poll() is None:
            up.kill()
        kgen("down", "-l", name, cwd=tmp_path, check=False)
    assert labelled(name) == []
