"""Issue 2: the lab lifecycle on a real Docker engine."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

from tests.lab.conftest import PREFIX, RunningLab, export_for_ci, kgen, labelled


def _keys(row: type) -> set[str]:
    return set(row.__required_keys__ | row.__optional_keys__)  # type: ignore[attr-defined]


def test_status_lists_nodes_pods_services_and_clients(demo: RunningLab) -> None:
    """Every key the reference promises (docs/reference.md), and the typed rows' keys
    exactly (the documents' own drift test keeps those and the reference together)."""
    from generator.node.documents import NodeRow, ServiceRow

    status = demo.status()
    assert set(status) == {"name", "nodes", "pods", "services", "clients"}
    assert status["name"] == demo.name
    assert [n["name"] for n in status["nodes"]] == ["node-0", "node-1", "node-2"]
    for node in status["nodes"]:
        assert {"name", "container", "ip", "podCIDR", "zone", "state"} <= set(node) == _keys(NodeRow)
        assert node["container"] == f"kgen-{demo.name}-{node['name']}"
        assert node["state"] == "Ready"
    assert status["clients"][0]["container"] == f"kgen-{demo.name}-client-0"
    for svc in status["services"]:
        assert {"name", "type", "clusterIP", "loadBalancerIP", "externalIPs", "healthCheckNodePort",
                "ports", "endpoints", "terminating"} <= set(svc) == _keys(ServiceRow)
        for port in svc["ports"]:
            assert set(port) == {"name", "port", "targetPort", "protocol", "nodePort"}


def test_exec_in_a_node_shows_cbr0_with_the_gateway(demo: RunningLab) -> None:
    result = demo.exec("node-0", "ip", "-br", "addr", "show", "cbr0")
    node = demo.status()["nodes"][0]
    gateway = json.loads((demo.dir / f"kgen-{demo.name}" / "config" / "cluster.json").read_text())[
        "nodes"][0]["gateway"]
    assert result.stdout.startswith("cbr0")
    assert f"{gateway}/{node['podCIDR'].split('/')[1]}" in result.stdout


def test_exec_returns_the_command_exit_status(demo: RunningLab) -> None:
    assert demo.exec("client-0", "sh", "-c", "exit 7", check=False).returncode == 7
    assert demo.exec("pod-0", "ip", "-br", "link", "show", "eth0").returncode == 0


def test_up_again_is_idempotent(demo: RunningLab) -> None:
    before = demo.status()
    result = demo.kgen("up")
    assert "node-0" in result.stdout
    assert demo.status() == before


def test_nodes_are_not_privileged_and_the_network_is_internal(demo: RunningLab) -> None:
    import docker

    client = docker.from_env()
    node = client.containers.get(f"kgen-{demo.name}-node-0")
    host = node.attrs["HostConfig"]
    assert host["Privileged"] is False
    assert {"NET_ADMIN", "NET_RAW", "SYS_ADMIN"} <= set(host["CapAdd"])
    assert client.networks.get(f"kgen-{demo.name}").attrs["Internal"] is True


def test_down_removes_everything_and_is_idempotent(tmp_path: Path) -> None:
    name = f"{PREFIX}life"[:20]
    lab = tmp_path / "lab.yaml"
    lab.write_text(f"name: {name}\nnodes: [n0, n1]\nclients: [c0]\n"
                   "pods: [{name: p0, node: n0}, {name: p1, node: n1}]\n")
    kgen("up", cwd=tmp_path)
    assert len(labelled(name)) == 4  # 2 nodes, 1 client, 1 network
    first = kgen("down", cwd=tmp_path)
    assert f"lab {name} is down" in first.stdout
    assert labelled(name) == []
    assert not (tmp_path / f"kgen-{name}" / "state").exists()
    second = kgen("down", cwd=tmp_path)
    assert second.returncode == 0 and "nothing was running" in second.stdout
    # Rendered but not running: apply refuses at once instead of waiting for agents.
    applied = kgen("apply", cwd=tmp_path, check=False, timeout=30)
    assert applied.returncode == 1
    assert applied.stderr.strip() == f"kgen: lab {name} is not running; run `kgen up -l lab.yaml`"


def test_stale_containers_and_networks_are_replaced(tmp_path: Path) -> None:
    import docker

    client = docker.from_env()
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: stale\nnodes: [n0]\nnodeNetwork: 172.31.240.0/24\n")
    # Leftovers of another run: a same-named container outside the compose project,
    # and a same-named network with another subnet.
    image = client.images.list(name="kgen-node")[0]
    client.networks.create("kgen-stale", internal=True, ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="172.31.241.0/24")]))
    client.containers.create(image.id, name="kgen-stale-n0", command=["sleep", "1"])
    try:
        result = kgen("up", cwd=tmp_path)
        assert "removed stale container kgen-stale-n0" in result.stderr
        assert "removed stale network kgen-stale" in result.stderr
    finally:
        kgen("down", cwd=tmp_path, check=False)
    assert labelled("stale") == []


def test_a_node_network_taken_by_another_docker_network_is_refused(tmp_path: Path) -> None:
    import docker

    client = docker.from_env()
    (tmp_path / "lab.yaml").write_text("name: taken\nnodes: [n0]\nnodeNetwork: 172.31.230.0/24\n")
    other = client.networks.create("kgen-test-other", internal=True, ipam=docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet="172.31.230.0/25")]))
    try:
        result = kgen("up", cwd=tmp_path, check=False)
    finally:
        other.remove()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "kgen: error: nodeNetwork 172.31.230.0/24 overlaps Docker network kgen-test-other "
        "(172.31.230.0/25); choose another nodeNetwork, or leave it out to get a free /24")
    assert labelled("taken") == []


def test_older_node_images_of_this_kgen_go_unless_used_and_no_one_elses(tmp_path: Path) -> None:
    import io

    import docker

    from generator.render.node_image import node_tag
    from generator.runtime.image import SOURCE_LABEL, image_source, prune_node_images

    client = docker.from_env()
    kgen("image", "build", cwd=tmp_path)
    # Built FROM the node image, labelled as this kgen labels its builds (the node image
    # itself may come from another checkout with the same node code: its tag is the
    # code's hash). The foreign one stands for another user's unused build.
    ours = f"LABEL {SOURCE_LABEL}={image_source()}\n"
    extra = {"idle": ours, "busy": ours, "foreign": f"LABEL {SOURCE_LABEL}=/somebody/else\n"}
    tags = {label: f"kgen-node:{PREFIX}old-{label}" for label in extra}
    for label, line in extra.items():
        client.images.build(fileobj=io.BytesIO(f"FROM {node_tag()}\n{line}LABEL old={label}\n"
                                               .encode()),
                            tag=tags[label], pull=False, network_mode="none", rm=True, forcerm=True)
    user = client.containers.create(tags["busy"], command=["true"])
    try:
        removed: list[str] = []
        prune_node_images(client, node_tag(), removed.append)
        assert f"removed old node image {tags['idle']}" in removed
        assert not [line for line in removed if tags["busy"] in line or tags["foreign"] in line]
        left = {t for image in client.images.list(name="kgen-node") for t in image.tags}
        assert {node_tag(), tags["busy"], tags["foreign"]} <= left and tags["idle"] not in left
    finally:
        user.remove(force=True)
        for tag in (tags["busy"], tags["foreign"], tags["idle"]):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(tag)


def test_bad_lab_creates_nothing(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: broken\nnodes: [n0]\npods: [{name: p, node: n9}]\n")
    result = kgen("up", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "kgen: lab.yaml: pods[0].node: unknown node 'n9' (nodes: n0)"
    assert labelled("broken") == []
    assert not (tmp_path / "kgen-broken").exists()


CYCLE_LAB = """\
name: {name}
nodes: [n0, n1]
clients: [c0]
pods: [{{name: p0, node: n0, labels: {{app: web}}}}, {{name: p1, node: n1, labels: {{app: web}}}}]
services: [{{name: web, selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}]
"""


def test_up_check_down_up_down_leaves_nothing_this_user_cannot_remove(tmp_path: Path) -> None:
    """The lifecycle as whoever runs the tests: .ci/run runs it as a non-root user in
    the docker group (a GitHub runner's user). Nodes are root in their containers;
    what they write into the lab directory must still be this user's to remove."""
    name = f"{PREFIX}cycle"[:20]
    (tmp_path / "lab.yaml").write_text(CYCLE_LAB.format(name=name))
    lab_dir = tmp_path / f"kgen-{name}"
    try:
        kgen("up", cwd=tmp_path)
        checked = kgen("check", cwd=tmp_path)
        assert re.fullmatch(r"\d+ passed, 0 failed in [\d.]+ s", checked.stdout.strip().splitlines()[-1])
        assert {p.name for p in (lab_dir / "state" / "heartbeat").iterdir()} == {"n0", "n1"}
        assert {p.name for p in (lab_dir / "state").glob("*.json")} == {"n0.json", "n1.json"}
        not_mine = [str(p) for p in lab_dir.rglob("*") if p.lstat().st_uid != os.getuid()]
        assert not_mine == []
        _down_removes_it_all(name, tmp_path)
        kgen("up", cwd=tmp_path)
        # What an older kgen's node left in the state directory: root's, not handed over.
        kgen("exec", "n0", "--", "sh", "-c", "mkdir /var/lib/kgen/state/old && "
             "touch /var/lib/kgen/state/old/heartbeat", cwd=tmp_path)
        _down_removes_it_all(name, tmp_path)
        shutil.rmtree(lab_dir)  # as this user: the rendered files are its own
    finally:
        export_for_ci(tmp_path / "lab.yaml", name, tmp_path)  # only a lab left running
        kgen("down", cwd=tmp_path, check=False)


def _down_removes_it_all(name: str, workdir: Path) -> None:
    down = kgen("down", cwd=workdir)
    assert f"lab {name} is down" in down.stdout
    assert "Traceback" not in down.stderr and "kgen: error" not in down.stderr
    assert labelled(name) == []
    assert not (workdir / f"kgen-{name}" / "state").exists()
