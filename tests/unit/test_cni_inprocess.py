"""The runtime calls kgen's own plugins in its process, and execs any other file.

What the agent gets must not depend on the path taken: the same ADD through the
exec'd wrappers (KGEN_CNI_EXEC=1) and in-process gives the same addresses, routes
and interfaces, and pods that reach each other. A file in CNI_PATH that is not
kgen's wrapper (here: one that logs each run, then runs the wrapper) is exec'd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from generator.node.cni.inprocess import wrapped_module
from generator.node.cni.runtime import PLUGINS, write_wrappers
from tests.conftest import ROOT
from tests.unit.test_cni import Netns, conf, in_ns, netns  # noqa: F401 - the fixture

ADD = """
import json, sys
from pathlib import Path
from generator.node.cni import runtime
conflist, pod, bin_dir = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
print(json.dumps(runtime.add(conflist, pod, f"/run/netns/{pod}", "eth0", bin_dir)))
"""


def test_only_kgens_wrappers_are_run_in_process(tmp_path: Path) -> None:
    written = write_wrappers(tmp_path / "bin", python="/usr/bin/python3", pythonpath="/opt/kgen")
    assert {p.name: wrapped_module(str(p)) for p in written} == \
        {name: f"generator.node.cni.{module}" for name, module in PLUGINS.items()}
    other = tmp_path / "bin" / "bridge"
    other.write_text("#!/bin/sh\necho hi >> /tmp/log\nexec /opt/cni/bin/bridge \"$@\"\n")
    assert wrapped_module(str(other)) is None, "a file that does more than run the module"
    assert wrapped_module(str(tmp_path / "missing")) is None


def _add(host: str, conflist: Path, pod: str, bin_dir: Path, exec_all: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), KGEN_CNI_EXEC="1" if exec_all else "0")
    out = subprocess.run(["ip", "netns", "exec", host, sys.executable, "-c", ADD, str(conflist),
                          pod, str(bin_dir)], check=True, capture_output=True, text=True, env=env)
    return dict(json.loads(out.stdout))


def _shape(result: dict) -> dict:
    """The result without what differs between any two ADDs (MACs, veth names, netns)."""
    return {"ips": [{k: v for k, v in ip.items() if k != "address"} for ip in result["ips"]],
            "routes": result["routes"], "interfaces": [i["name"] for i in result["interfaces"]
                                                       if not i["name"].startswith("veth")]}


def test_in_process_and_exec_give_the_same_pod_network(netns: Netns, tmp_path: Path) -> None:  # noqa: F811
    bin_dir = tmp_path / "bin"
    write_wrappers(bin_dir, python=sys.executable, pythonpath=str(ROOT))
    runs = tmp_path / "loopback-runs"
    wrapper = (bin_dir / "loopback").read_text().split("\n", 1)[1]
    (bin_dir / "loopback").write_text(f"#!/bin/sh\necho run >> {runs}\n{wrapper}")
    conflist = tmp_path / "net.conflist"
    bridge = conf(tmp_path / "ipam")
    conflist.write_text(json.dumps({"cniVersion": "1.0.0", "name": "kgt",
                                    "plugins": [bridge, {"type": "loopback"}]}))
    host = netns.new("h")
    pods = [netns.new("a"), netns.new("b")]
    here = _add(host, conflist, pods[0], bin_dir, exec_all=False)
    there = _add(host, conflist, pods[1], bin_dir, exec_all=True)
    assert _shape(here) == _shape(there)
    assert here["ips"][0]["address"] != there["ips"][0]["address"]
    assert runs.read_text().splitlines() == ["run", "run"], "the logging loopback, exec'd twice"
    for pod, other in ((pods[0], there), (pods[1], here)):
        address = other["ips"][0]["address"].split("/")[0]
        assert " 0% packet loss" in in_ns(pod, "ping", "-c", "1", "-W", "2", address)
    assert "UP" in in_ns(pods[0], "ip", "-br", "link", "show", "lo") or \
        "UNKNOWN" in in_ns(pods[0], "ip", "-br", "link", "show", "lo")


@pytest.mark.parametrize("command", ["VERSION"])
def test_commands_a_handler_does_not_take_are_exec_d(command: str, tmp_path: Path) -> None:
    from generator.node.cni.inprocess import run_in_process

    path = write_wrappers(tmp_path / "bin", python=sys.executable, pythonpath=str(ROOT))[0]
    ran, result = run_in_process(str(path), {"CNI_COMMAND": command}, {"cniVersion": "1.0.0"})
    assert (ran, result) == (False, None)
