"""`kgen render --format clab`: a valid containerlab topology for the same lab as the compose file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from generator.cli import app
from generator.lab.model import load_lab
from generator.render.clab import render_clab
from tests.conftest import ROOT, SCHEMAS, need_schemas
from tests.unit.conftest import render_lab

DEMO = ROOT / "labs" / "demo.yaml"
# The schema's address patterns allow a zone suffix `%[\p{N}\p{L}]+`: Unicode
# property classes, which Python's `re` (used by jsonschema) does not know.
UNICODE_CLASS = r"[\p{N}\p{L}]"
PYTHON_CLASS = r"[^\W_]"  # letters and digits


def render_both(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(compose document, clab document) for the demo lab rendered into `out`."""
    lab = load_lab(DEMO)
    path = render_clab(lab, render_lab(lab, out), out)
    assert path == out / "demo.clab.yml"
    return (yaml.safe_load((out / "docker-compose.yml").read_text()),
            yaml.safe_load(path.read_text()))


def clab_schema() -> dict[str, Any]:
    text = (SCHEMAS / "clab.schema.json").read_text()
    text = text.replace(json.dumps(UNICODE_CLASS)[1:-1], json.dumps(PYTHON_CLASS)[1:-1])
    assert r"\\p{" not in text, "the clab schema has a new Unicode class to translate for Python's re"
    return json.loads(text)


def test_clab_validates_against_the_containerlab_schema(tmp_path: Path) -> None:
    need_schemas()
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(render_both(tmp_path)[1], clab_schema())


def test_the_schema_check_catches_a_wrong_key(tmp_path: Path) -> None:
    need_schemas()
    jsonschema = pytest.importorskip("jsonschema")
    doc = render_both(tmp_path)[1]
    doc["topology"]["nodes"]["node-0"]["cap_add"] = ["NET_ADMIN"]  # compose's spelling
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, clab_schema())


def test_same_input_gives_byte_identical_output(tmp_path: Path) -> None:
    lab = load_lab(DEMO)
    texts = []
    for out in (tmp_path / "a", tmp_path / "b", tmp_path / "a"):
        render_clab(lab, render_lab(lab, out), out)
        texts.append((out / "demo.clab.yml").read_text())
    assert texts[0] == texts[2]
    # Another directory: only the label recording where the lab is rendered differs.
    assert texts[1].replace(str(tmp_path / "b"), str(tmp_path / "a")) == texts[0]


def test_containers_and_network_are_named_like_kgen(tmp_path: Path) -> None:
    compose, clab = render_both(tmp_path)
    # containerlab names containers <prefix>-<lab name>-<node name>
    for name, service in compose["services"].items():
        assert f"{clab['prefix']}-{clab['name']}-{name}" == service["container_name"]
    assert clab["mgmt"]["network"] == compose["networks"]["lab"]["name"]
    assert list(clab["topology"]["nodes"]) == list(compose["services"])


def test_same_settings_as_the_compose_file(tmp_path: Path) -> None:
    compose, clab = render_both(tmp_path)
    defaults = clab["topology"]["defaults"]
    assert defaults["kind"] == "linux" and defaults["privileged"] is False
    ipam = compose["networks"]["lab"]["ipam"]["config"][0]
    assert (clab["mgmt"]["ipv4-subnet"], clab["mgmt"]["ipv4-gw"]) == (ipam["subnet"], ipam["gateway"])
    for name, service in compose["services"].items():
        node = {**defaults, **clab["topology"]["nodes"][name]}
        assert node["image"] == service["image"]
        assert node["cap-add"] == service["cap_add"]
        assert node["sysctls"] == service["sysctls"]
        assert node["binds"] == service["volumes"]
        assert node["mgmt-ipv4"] == service["networks"]["lab"]["ipv4_address"]
        assert node["labels"] == service["labels"]
        assert node.get("env", {}) == service.get("environment", {})
        assert node.get("cmd", "").split() == service.get("command", [])


def test_management_addresses_come_from_the_cluster_state(tmp_path: Path) -> None:
    _, clab = render_both(tmp_path)
    cluster = json.loads((tmp_path / "config" / "cluster.json").read_text())
    nodes = clab["topology"]["nodes"]
    assert clab["mgmt"]["ipv4-subnet"] == cluster["nodeNetwork"]
    for member in cluster["nodes"] + cluster["clients"]:
        assert nodes[member["name"]]["mgmt-ipv4"] == member["ip"]


def test_binds_exist_relative_to_the_clab_file(tmp_path: Path) -> None:
    """containerlab resolves relative host paths against the topology file and refuses missing ones."""
    _, clab = render_both(tmp_path)
    for node in clab["topology"]["nodes"].values():
        for bind in node["binds"]:
            assert (tmp_path / bind.split(":")[0]).is_dir(), bind


def test_cli_renders_the_clab_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["render", "--format", "clab"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "kgen-demo"
    assert result.stdout.strip() == str(out)
    assert (out / "docker-compose.yml").is_file()
    assert yaml.safe_load((out / "demo.clab.yml").read_text())["name"] == "demo"


def test_cli_default_format_writes_no_clab_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["render", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "demo.clab.yml").exists()


def test_cli_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["render", "--format", "k8s", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "--format: 'k8s' is not one of compose, clab" in result.stderr
