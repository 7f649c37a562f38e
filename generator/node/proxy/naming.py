"""Chain names exactly as kube-proxy's iptables proxier makes them."""

from __future__ import annotations

import base64
import hashlib

NAMESPACE = "default"


def service_port_name(service: str, port_name: str, namespace: str = NAMESPACE) -> str:
    """`<namespace>/<service>` or `<namespace>/<service>:<port name>` (kube-proxy's
    ServicePortName)."""
    base = f"{namespace}/{service}"
    return f"{base}:{port_name}" if port_name else base


def _b32_prefix(digest: bytes, chars: int) -> str:
    """The first `chars` characters (a multiple of 8) of base32(digest): base32 of the
    5-byte groups they stand for, not of the whole digest (which dominated a 10k sync)."""
    return base64.b32encode(digest[:chars // 8 * 5]).decode()


def _hash16(text: str) -> str:
    return _b32_prefix(hashlib.sha256(text.encode()).digest(), 16)


def svc_chain(spn: str, protocol: str) -> str:
    return "KUBE-SVC-" + _hash16(spn + protocol.lower())


def ext_chain(spn: str, protocol: str) -> str:
    return "KUBE-EXT-" + _hash16(spn + protocol.lower())


def svl_chain(spn: str, protocol: str) -> str:
    return "KUBE-SVL-" + _hash16(spn + protocol.lower())


def sep_chain(spn: str, protocol: str, endpoint: str) -> str:
    """`endpoint` is `ip:port`, appended before hashing."""
    return "KUBE-SEP-" + _hash16(spn + protocol.lower() + endpoint)


# ---- nftables mode (pkg/proxy/nftables): readable names prefixed by a short hash

NFT_NAME_MAX = 256 - 16  # knftables' NameLengthMax less the longest prefix


def _hash_and_truncate(name: str) -> str:
    name = f"{_b32_prefix(hashlib.sha256(name.encode()).digest(), 8)}-{name}"
    return name if len(name) <= NFT_NAME_MAX else name[:NFT_NAME_MAX - 3] + "..."


def nft_port_base(namespace: str, service: str, protocol: str, port_name: str) -> str:
    """`HASH-ns/svc/proto/port`, e.g. `ULMVA6XW-ns1/svc1/tcp/p80`."""
    return _hash_and_truncate(f"{namespace}/{service}/{protocol}/{port_name}")


def nft_endpoint_base(namespace: str, service: str, protocol: str, port_name: str,
                      ip: str, port: int) -> str:
    """`HASH-ns/svc/proto/port__ip/port`, e.g. `5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80`."""
    return _hash_and_truncate(f"{namespace}/{service}/{protocol}/{port_name}__"
                              f"{ip.replace(':', '.')}/{port}")
