"""The node image's identity: its Debian packages and the tag that names a
build of the node code (pure; building it is `generator.runtime.image`)."""

from __future__ import annotations

import hashlib

from generator.resources import PACKAGE_DIR, node_package_files, templates_dir

SUITE = "bookworm"
# What an engineer reaches for in a node (lab contract §3), plus iperf3 for throughput.
PACKAGES = ["python3", "iproute2", "iptables", "nftables", "conntrack", "tcpdump", "curl",
            "iputils-ping", "procps", "iperf3", "util-linux", "ca-certificates"]


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:12]


def base_tag() -> str:
    return "kgen-base:" + _digest(SUITE.encode(), " ".join(PACKAGES).encode())


def node_tag() -> str:
    """Changes whenever the node code, the Dockerfile or the base changes."""
    parts = [base_tag().encode(), (templates_dir() / "Dockerfile.node.j2").read_bytes()]
    for path in node_package_files():
        parts += [str(path.relative_to(PACKAGE_DIR)).encode(), path.read_bytes()]
    return "kgen-node:" + _digest(*parts)
