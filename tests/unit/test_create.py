"""`kgen up` creates what the rendered compose file says, through the Engine API.

The compose file stays the artifact a user runs by hand; these tests read the
demo's rendered file and check that every setting of every service reaches the
Engine API arguments, that compose's own labels are there (so `docker compose
down` finds the lab), and that a key kgen does not translate is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.lab.model import load_lab
from generator.runtime.create import (
    KNOWN_KEYS,
    ContainerSpec,
    container_specs,
    create_all,
    load,
    network_spec,
)
from generator.runtime.errors import RuntimeFailure
from tests.conftest import ROOT
from tests.unit.conftest import render_lab

PROJECT = "kgen-demo"


def rendered(tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    cluster = render_lab(load_lab(ROOT / "labs" / "demo.yaml"), tmp_path)
    path = tmp_path / "docker-compose.yml"
    return path, yaml.safe_load(path.read_text()), cluster


def test_every_service_becomes_one_container_with_its_settings(tmp_path: Path) -> None:
    path, doc, cluster = rendered(tmp_path)
    specs = {s.service: s for s in container_specs(load(path), PROJECT, path)}
    assert list(specs) == list(doc["services"])
    for name, svc in doc["services"].items():
        spec = specs[name]
        assert (spec.name, spec.image) == (svc["container_name"], svc["image"])
        assert spec.ip == svc["networks"]["lab"]["ipv4_address"]
        assert spec.network == doc["networks"]["lab"]["name"]
        assert spec.create["hostname"] == svc["hostname"]
        assert spec.create["command"] == svc.get("command")
        assert spec.create["environment"] == {k: str(v) for k, v in
                                              (svc.get("environment") or {}).items()}
        assert spec.host["cap_add"] == svc["cap_add"]
        assert spec.host["sysctls"] == {k: str(v) for k, v in svc["sysctls"].items()}
        assert spec.host["init"] is True
        assert spec.host["restart_policy"] == {"Name": "always"}
        labels = spec.create["labels"]
        assert {k: str(v) for k, v in svc["labels"].items()}.items() <= labels.items()
        assert labels["com.docker.compose.project"] == PROJECT
        assert labels["com.docker.compose.service"] == name
        assert labels["com.docker.compose.project.working_dir"] == str(tmp_path.resolve())
    node = specs["node-0"]
    # Relative bind sources are the compose file's directory, made absolute.
    assert f"{tmp_path.resolve()}/config:/etc/kgen:ro" in node.host["binds"]
    assert all(b.startswith("/") for b in node.host["binds"])
    assert node.create["environment"] == {"KGEN_NODE": "node-0"}
    assert {n["ip"] for n in cluster["nodes"]} <= {s.ip for s in specs.values()}


def test_the_network_is_the_compose_file_s(tmp_path: Path) -> None:
    path, doc, cluster = rendered(tmp_path)
    spec = network_spec(load(path), PROJECT)
    net = doc["networks"]["lab"]
    assert (spec.name, spec.subnet) == (net["name"], cluster["nodeNetwork"])
    assert spec.gateway == net["ipam"]["config"][0]["gateway"]
    assert spec.labels["kgen.lab"] == "demo"
    assert spec.labels["com.docker.compose.network"] == "lab"
    assert spec.labels["com.docker.compose.project"] == PROJECT


def test_a_key_kgen_does_not_translate_is_refused(tmp_path: Path) -> None:
    path, doc, _ = rendered(tmp_path)
    doc["services"]["node-1"]["privileged"] = True
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(RuntimeFailure, match=r"services\.node-1\.privileged: kgen does not"):
        container_specs(load(path), PROJECT, path)
    assert "privileged" not in KNOWN_KEYS


def test_the_digest_changes_with_any_setting(tmp_path: Path) -> None:
    """An existing container is kept only when it was created from the same settings."""
    path, _, _ = rendered(tmp_path)
    spec = container_specs(load(path), PROJECT, path)[0]
    changed = ContainerSpec(spec.service, spec.name, spec.image, spec.network, spec.ip,
                            spec.create, {**spec.host, "sysctls": {}})
    assert spec.digest() == container_specs(load(path), PROJECT, path)[0].digest()
    assert changed.digest() != spec.digest()


class FakeAPI:
    """The few Engine API calls create_all makes, recorded; one name fails."""

    def __init__(self, existing: list[dict[str, Any]], failing: str = "") -> None:
        self.existing, self.failing = existing, failing
        self.calls: list[tuple[str, str]] = []

    def containers(self, all: bool) -> list[dict[str, Any]]:
        return self.existing

    def create_endpoint_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_networking_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return config

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def create_container(self, image: str, name: str, **kwargs: Any) -> dict[str, str]:
        if name == self.failing:
            import docker.errors

            raise docker.errors.APIError("boom", explanation="no space left on device")
        self.calls.append(("create", name))
        return {"Id": name}

    def start(self, container: str) -> None:
        self.calls.append(("start", container))

    def remove_container(self, container: str, force: bool) -> None:
        self.calls.append(("remove", container))


class FakeClient:
    def __init__(self, api: FakeAPI) -> None:
        self.api = api


def test_create_all_keeps_what_matches_and_reports_each(tmp_path: Path) -> None:
    path, _, _ = rendered(tmp_path)
    specs = container_specs(load(path), PROJECT, path)
    same, stale = specs[0], specs[1]
    api = FakeAPI([
        {"Id": "id0", "Names": [f"/{same.name}"], "State": "running",
         "Labels": {"kgen.spec": same.digest()}},
        {"Id": "id1", "Names": [f"/{stale.name}"], "State": "exited",
         "Labels": {"kgen.spec": "something-else"}},
    ])
    seen: list[tuple[int, int]] = []
    counts = create_all(FakeClient(api), specs, lambda done, total, name: seen.append(
        (done, total)), workers=2)  # type: ignore[arg-type]
    assert counts == {"created": len(specs) - 1, "started": 0, "kept": 1}
    assert ("remove", "id1") in api.calls and ("start", "id0") not in api.calls
    assert sorted(seen) == [(i, len(specs)) for i in range(1, len(specs) + 1)]


def test_create_all_says_which_container_failed(tmp_path: Path) -> None:
    path, _, _ = rendered(tmp_path)
    specs = container_specs(load(path), PROJECT, path)
    api = FakeAPI([], failing=specs[2].name)
    with pytest.raises(RuntimeFailure, match=f"creating container {specs[2].name}: no space"):
        create_all(FakeClient(api), specs, lambda *a: None)  # type: ignore[arg-type]


def test_a_large_compose_file_says_how_to_run_it_with_compose_v1(tmp_path: Path) -> None:
    """compose v1 deadlocks with as many services as its parallel limit (64)."""
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"name": "big", "nodes": [f"n{i}" for i in range(70)]}))
    render_lab(load_lab(big), tmp_path / "big")
    render_lab(load_lab(ROOT / "labs" / "demo.yaml"), tmp_path / "demo")
    assert "COMPOSE_PARALLEL_LIMIT=140" in (tmp_path / "big" / "docker-compose.yml").read_text()
    assert "COMPOSE_PARALLEL_LIMIT" not in (tmp_path / "demo" / "docker-compose.yml").read_text()
