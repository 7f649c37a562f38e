"""The node image: a cached Debian base plus a thin layer with kgen's node code.

The base (`kgen-base:<hash of the package list>`) is built once, either from
`debian:bookworm-slim` when a registry answers or with debootstrap + `docker
import` when none does; both give the same tag. The node layer
(`kgen-node:<hash of base + node code>`) is rebuilt in seconds after a code
change and never redoes the base.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from generator.render.node_image import PACKAGES, SUITE, base_tag, node_tag
from generator.resources import PACKAGE_DIR, node_package_files, templates_dir
from generator.runtime.errors import ImageError

ONLINE_BASE = "debian:bookworm-slim"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Echo = Callable[[str], None]


def exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def registry_reachable(client: docker.DockerClient) -> bool:
    """True when the online base is here or can be pulled (fails fast offline)."""
    if exists(client, ONLINE_BASE):
        return True
    try:
        client.images.pull(ONLINE_BASE)
        return True
    except docker.errors.APIError:
        return False


def ensure_node_image(client: docker.DockerClient, echo: Echo, offline: bool | None = None,
                      force: bool = False) -> str:
    """Build what is missing; `offline=None` picks the path by itself."""
    tag = node_tag()
    if exists(client, tag) and not force:
        return tag
    if not exists(client, base_tag()) or force:
        if offline is None:
            offline = not registry_reachable(client)
        if offline:
            echo(f"building base image {base_tag()} offline (debootstrap + docker import)")
            build_base_offline(client, echo)
        else:
            echo(f"building base image {base_tag()} from {ONLINE_BASE}")
            build_base_online(client, echo)
    else:
        echo(f"base image {base_tag()} is cached")
    echo(f"building node image {tag}")
    build_node_layer(client, tag, echo)
    prune_node_images(client, tag, echo)
    return tag


SOURCE_LABEL = "kgen.source"


def image_source() -> str:
    """Which kgen built an image: the directory of its node code. On an engine shared by
    several users (or checkouts), each kgen prunes its own older builds and no one else's."""
    return str(PACKAGE_DIR)


def prune_node_images(client: docker.DockerClient, keep: str, echo: Echo) -> None:
    """Each code change makes a new node tag: drop the older ones this kgen built
    (labelled with its source) that no container uses. Another user's node images
    are not ours to judge: unused now, they may be what their next `kgen up` runs."""
    # sparse: the list call alone, without one inspect per container, which fails when
    # another container on a shared engine goes away between the two (a NotFound)
    in_use = {c.attrs.get("ImageID") for c in client.containers.list(all=True, sparse=True)}
    mine = f"{SOURCE_LABEL}={image_source()}"
    for image in client.images.list(name="kgen-node", filters={"label": mine}):
        old = [t for t in image.tags if t.startswith("kgen-node:") and t != keep]
        if image.id in in_use or not old or keep in image.tags:
            continue
        for ref in old:
            try:
                client.images.remove(ref)
                echo(f"removed old node image {ref}")
            except docker.errors.APIError:
                pass  # in use after all, or already gone: keep going


def _build(client: docker.DockerClient, context: Path, tag: str, echo: Echo,
           labels: dict[str, str] | None = None) -> None:
    try:
        for chunk in client.api.build(path=str(context), tag=tag, rm=True, forcerm=True, decode=True,
                                      pull=False, network_mode="host", labels=labels):
            if "error" in chunk:
                raise ImageError(chunk["error"].strip())
            line = str(chunk.get("stream", "")).strip()
            if line.startswith("Step "):
                echo(line)
    except docker.errors.APIError as err:
        raise ImageError(str(err)) from None


def build_base_online(client: docker.DockerClient, echo: Echo) -> None:
    with tempfile.TemporaryDirectory(prefix="kgen-base-") as tmp:
        dockerfile = (
            f"FROM {ONLINE_BASE}\n"
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
            f"--no-install-recommends {' '.join(PACKAGES)} && rm -rf /var/lib/apt/lists/*\n"
        )
        (Path(tmp) / "Dockerfile").write_text(dockerfile)
        _build(client, Path(tmp), base_tag(), echo)


def debian_mirror(sources: Path = Path("/etc/apt")) -> str | None:
    """The Debian mirror this machine's apt uses; None lets debootstrap choose."""
    texts = [p.read_text(errors="replace") for p in sorted(sources.rglob("*"))
             if p.is_file() and p.suffix in (".list", ".sources")]
    for text in texts:
        for match in re.finditer(r"(?:URIs:|deb)\s+(\S+/debian)/?\s", text):
            return match.group(1)
    return None


def build_base_offline(client: docker.DockerClient, echo: Echo) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (apt-get install -y debootstrap)")
    if os.geteuid() != 0:  # it makes device nodes and chroots: a docker group is not enough
        raise ImageError("building the node image offline runs debootstrap, which needs root: "
                         "run `sudo kgen image build --offline` once, then kgen as this user")
    with tempfile.TemporaryDirectory(prefix="kgen-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
               SUITE, str(root)]
        mirror = debian_mirror()
        if mirror:
            cmd.append(mirror)
        _run_with_progress(cmd, echo)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        echo("importing the root file system")
        repo, tag = base_tag().split(":")
        try:
            client.api.import_image(src=str(archive), repository=repo, tag=tag,
                                    changes=[f"ENV {PATH_ENV}", 'CMD ["/bin/bash"]'])
        except docker.errors.APIError as err:
            raise ImageError(f"docker import failed: {err}") from None


def _run_with_progress(cmd: list[str], echo: Echo) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        line = line.strip()
        tail = (tail + [line])[-20:]
        if line.startswith(("I: Retrieving", "I: Extracting", "I: Installing", "I: Configuring",
                            "I: Base system")):
            echo(line[3:])
    if proc.wait() != 0:
        raise ImageError(f"{cmd[0]} failed:\n" + "\n".join(tail))


def build_node_layer(client: docker.DockerClient, tag: str, echo: Echo) -> None:
    with tempfile.TemporaryDirectory(prefix="kgen-node-") as tmp:
        context = Path(tmp)
        for path in node_package_files():
            target = context / "generator" / path.relative_to(PACKAGE_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        template = (templates_dir() / "Dockerfile.node.j2").read_text()
        (context / "Dockerfile").write_text(template.replace("{{ base }}", base_tag()))
        _build(client, context, tag, echo, labels={SOURCE_LABEL: image_source()})
