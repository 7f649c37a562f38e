"""Rendering: byte-identical output, valid compose, the contract's names and settings."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from generator.cluster.network import choose_node_network
from generator.lab.model import load_lab, parse_lab
from tests.conftest import ROOT, SCHEMAS, need_schemas
from tests.unit.conftest import render_lab

DEMO = ROOT / "labs" / "demo.yaml"


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_input_gives_byte_identical_output(tmp_path: Path) -> None:
    lab = load_lab(DEMO)
    render_lab(lab, tmp_path / "a")
    first = tree(tmp_path / "a")
    render_lab(lab, tmp_path / "a")  # re-render over itself
    assert tree(tmp_path / "a") == first
    assert "docker-compose.yml" in first


def test_another_directory_changes_only_the_directory_label(tmp_path: Path) -> None:
    """Containers and networks record where their lab is rendered (`kgen.dir`), so that
    kgen finds a running lab from any directory; nothing else depends on the directory."""
    lab = load_lab(DEMO)
    render_lab(lab, tmp_path / "a")
    render_lab(lab, tmp_path / "b")
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    label = "kgen.dir: \"{}\"".format
    assert a["docker-compose.yml"].decode().count(label(tmp_path / "a")) == 5  # 4 members + network
    moved = {k: v.replace(label(tmp_path / "b").encode(), label(tmp_path / "a").encode())
             for k, v in b.items()}
    assert moved == a
    compose = yaml.safe_load(a["docker-compose.yml"])
    for labels in [s["labels"] for s in compose["services"].values()] + [
            compose["networks"]["lab"]["labels"]]:
        assert labels["kgen.dir"] == str(tmp_path / "a")
        assert labels["kgen.file"] == str(DEMO)


def compose_doc(tmp_path: Path) -> dict:
    render_lab(load_lab(DEMO), tmp_path)
    return yaml.safe_load((tmp_path / "docker-compose.yml").read_text())


def test_compose_follows_the_contract(tmp_path: Path) -> None:
    doc = compose_doc(tmp_path)
    node = doc["services"]["node-0"]
    assert node["container_name"] == "kgen-demo-node-0"
    assert node["labels"]["kgen.lab"] == "demo"
    assert set(node["cap_add"]) == {"NET_ADMIN", "NET_RAW", "SYS_ADMIN"}
    assert "privileged" not in node
    assert node["sysctls"]["net.ipv4.ip_forward"] == "1"
    assert doc["services"]["client-0"]["container_name"] == "kgen-demo-client-0"
    net = doc["networks"]["lab"]
    assert net["internal"] is True and net["name"] == "kgen-demo"
    assert all(list(s["networks"]) == ["lab"] for s in doc["services"].values())


def test_compose_validates_against_the_compose_spec(tmp_path: Path) -> None:
    """The spec's `$schema` lacks draft 7's trailing `#`, so name the draft rather than let
    jsonschema guess; then prove the check is not vacuous: a typo'd key is refused."""
    need_schemas()
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(json.loads((SCHEMAS / "compose-spec.json").read_text()))
    doc = compose_doc(tmp_path)
    validator.validate(doc)
    doc["services"]["node-0"]["cap-add"] = doc["services"]["node-0"].pop("cap_add")
    assert not validator.is_valid(doc)


def test_compose_v1_accepts_it(tmp_path: Path) -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose (v1) is not installed")
    compose_doc(tmp_path)
    result = subprocess.run(["docker-compose", "-f", str(tmp_path / "docker-compose.yml"),
                             "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_per_node_files(tmp_path: Path) -> None:
    render_lab(load_lab(DEMO), tmp_path)
    cluster = json.loads((tmp_path / "config" / "cluster.json").read_text())
    for node in cluster["nodes"]:
        conf = json.loads((tmp_path / "config" / "nodes" / node["name"] /
                           "10-kgen.conflist").read_text())
        bridge = conf["plugins"][0]
        assert bridge["bridge"] == "cbr0" and bridge["hairpinMode"] is True
        assert bridge["mtu"] == cluster["mtu"]
        assert bridge["ipam"]["ranges"] == [[{"subnet": node["podCIDR"],
                                              "gateway": node["gateway"]}]]


def test_node_network_is_the_first_free_one_and_is_kept() -> None:
    lab = parse_lab({"name": "t", "nodes": ["n"]})
    used = [ipaddress.ip_network("172.31.0.0/24"), ipaddress.ip_network("172.31.1.0/25")]
    assert str(choose_node_network(lab, None, used)) == "172.31.2.0/24"
    assert str(choose_node_network(lab, "172.31.9.0/24", used)) == "172.31.9.0/24"
    assert str(choose_node_network(lab, "172.31.0.0/24", used)) == "172.31.2.0/24"
    fixed = parse_lab({"name": "t", "nodes": ["n"], "nodeNetwork": "192.168.50.0/24"})
    assert str(choose_node_network(fixed, None, used)) == "192.168.50.0/24"
