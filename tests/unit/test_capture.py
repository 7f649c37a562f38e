"""`kgen capture`: where tcpdump runs and how it is bounded (no Docker needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from generator.capture import tcpdump
from generator.cli import app
from generator.lab.model import load_lab
from tests.conftest import ROOT
from tests.unit.conftest import desired, render_lab

DEMO = ROOT / "labs" / "demo.yaml"
runner = CliRunner()


@pytest.fixture
def cluster() -> dict:
    return desired(load_lab(DEMO))


def test_a_node_is_captured_in_its_container_on_eth0_by_default(cluster: dict) -> None:
    where = tcpdump.resolve(cluster, "node-1", None)
    assert (where.kind, where.container, where.netns, where.iface) == (
        "node", "kgen-demo-node-1", None, "eth0")
    assert tcpdump.resolve(cluster, "node-1", "vxlan").iface == "kgen.1"
    assert tcpdump.resolve(cluster, "node-1", "cbr0").iface == "cbr0"


def test_a_pod_is_captured_in_its_namespace_on_its_node(cluster: dict) -> None:
    where = tcpdump.resolve(cluster, "pod-2", None)
    assert where.prefix() == ["docker", "exec", "-i", "kgen-demo-node-1", "ip", "netns", "exec",
                              "pod-2"]
    assert where.iface == "eth0"
    client = tcpdump.resolve(cluster, "client-0", None)
    assert client.prefix() == ["docker", "exec", "-i", "kgen-demo-client-0"]


def test_the_command_is_bounded_by_count_and_time(cluster: dict) -> None:
    argv = tcpdump.argv(tcpdump.resolve(cluster, "node-0", None), 7, 2.5, ["udp", "port", "4789"])
    tail = argv[argv.index("kgen-demo-node-0") + 1:]
    assert tail == ["timeout", "2.5", "tcpdump", "-i", "eth0", "--immediate-mode", "-U", "-n",
                    "-w", "-", "-c", "7", "udp", "port", "4789"]


@pytest.mark.parametrize("target, iface, message", [
    ("nobody", None, "no node, client or pod named 'nobody'"),
    ("pod-0", "vxlan", "only a node has the VXLAN device"),
    ("node-0", "eth0; rm -rf /", "is not an interface name"),
])
def test_bad_targets_and_interfaces(cluster: dict, target: str, iface: str | None,
                                    message: str) -> None:
    with pytest.raises(tcpdump.CaptureError, match=message):
        tcpdump.resolve(cluster, target, iface)


@pytest.mark.parametrize("count, duration", [(0, 10), (5, 0), (5, -1), (5, 10_000)])
def test_bounds_are_refused_outside_their_range(count: int, duration: float) -> None:
    with pytest.raises(tcpdump.CaptureError):
        tcpdump.check_bounds(count, duration)


def test_the_vxlan_port_is_told_for_a_node_underlay_capture(cluster: dict) -> None:
    node = tcpdump.resolve(cluster, "node-0", None)
    hint = tcpdump.decode_hint(cluster, node, "x.pcap")
    assert hint is not None and "tshark -r x.pcap -d udp.port==4789,vxlan" in hint
    assert tcpdump.decode_hint(cluster, tcpdump.resolve(cluster, "pod-0", None), "x") is None
    assert tcpdump.decode_hint(cluster, tcpdump.resolve(cluster, "node-0", "vxlan"), "x") is None


def test_default_file_is_under_the_lab_directory(cluster: dict, tmp_path: Path) -> None:
    where = tcpdump.resolve(cluster, "node-0", "cbr0")
    assert tcpdump.default_file(tmp_path, where) == tmp_path / "captures" / "node-0-cbr0.pcap"


def test_run_stops_a_command_that_outlives_its_duration(tmp_path: Path) -> None:
    """The host's own bound: a command that ignores the duration is ended after the grace."""
    sink = tmp_path / "out"
    with sink.open("wb") as f:
        result = tcpdump.run([sys.executable, "-c", "import time; time.sleep(60)"], f, -14.5)
    assert result.stopped_by_host and result.status != 0


def test_run_relays_tcpdump_messages_and_reads_the_count(tmp_path: Path) -> None:
    script = ("import sys; sys.stdout.buffer.write(b'pcap'); "
              "print('listening on eth0', file=sys.stderr); "
              "print('3 packets captured', file=sys.stderr); sys.exit(124)")
    messages = tmp_path / "messages"
    with (tmp_path / "out").open("wb") as sink, messages.open("w") as err:
        result = tcpdump.run([sys.executable, "-c", script], sink, 5, err)
    assert (result.status, result.captured, result.stopped_by_host) == (0, 3, False)
    assert (tmp_path / "out").read_bytes() == b"pcap"
    assert messages.read_text() == "listening on eth0\n3 packets captured\n"


def test_capture_command_refuses_unknown_targets(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    render_lab(DEMO, tmp_path / "kgen-demo")
    result = runner.invoke(app, ["capture", "-l", str(DEMO), "nobody"])
    assert result.exit_code == 2 and "no node, client or pod named 'nobody'" in result.stderr
    result = runner.invoke(app, ["capture", "-l", str(DEMO), "node-0", "-c", "0"])
    assert result.exit_code == 2 and "-c: 0 must be at least 1" in result.stderr


def test_capture_of_a_lab_never_rendered_is_a_run_time_failure(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # Not the demo itself: a demo may be running on this engine (the lab tests' own).
    lab = tmp_path / "lab.yaml"
    lab.write_text(DEMO.read_text().replace("name: demo", "name: never-up"))
    result = runner.invoke(app, ["capture", "-l", str(lab), "node-0"])
    assert result.exit_code == 1
    assert "lab never-up is not running; run `kgen up -l " in result.stderr
