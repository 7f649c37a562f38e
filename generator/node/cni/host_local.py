"""host-local IPAM, with the reference plugin's on-disk layout (the rules of
allocation are in `allocator.py`).

`<dataDir>/<network>/<ip>` holds `<container id>\\r\\n<ifname>`;
`last_reserved_ip.<range set>` remembers where round-robin allocation left
off; `lock` serialises concurrent ADDs and DELs (flock).

A runtime may ask for particular addresses, as with the reference: `IP=` in
CNI_ARGS, `args.cni.ips` in the configuration, or the `ips` capability
(`runtimeConfig.ips`). Each requested address is taken from the range set that
contains it; one that is taken, the gateway, or in no range set is an error.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

from generator.node.cni import spec
from generator.node.cni.allocator import allocate, ranges
from generator.node.cni.spec import CNIError
from generator.node.cni.types import CniResult, IpamConf, NetConf, Route

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LINE_BREAK = "\r\n"
BOOKKEEPING = ("lock", "last_reserved_ip.")


class DiskStore:
    """The reference plugin's layout: one file per address, a lock, the last reservation."""

    def __init__(self, data_dir: str, network: str) -> None:
        self.dir = Path(data_dir) / network
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o755)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.dir / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def owner(self, ip: ipaddress.IPv4Address) -> str | None:
        try:
            return (self.dir / str(ip)).read_bytes().decode()
        except FileNotFoundError:
            return None

    def reserve(self, ip: ipaddress.IPv4Address, container: str, ifname: str) -> bool:
        try:
            fd = os.open(self.dir / str(ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(f"{container}{LINE_BREAK}{ifname}")
        (self.dir / "last_reserved_ip.0").write_text(str(ip))
        return True

    def release(self, ip: ipaddress.IPv4Address) -> None:
        (self.dir / str(ip)).unlink(missing_ok=True)

    def last_reserved(self) -> ipaddress.IPv4Address | None:
        try:
            return ipaddress.IPv4Address((self.dir / "last_reserved_ip.0").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def allocations(self) -> Iterator[tuple[Path, str]]:
        for path in self.dir.iterdir():
            if not path.name.startswith(BOOKKEEPING):
                # Bytes: read_text() would fold the \r\n that separates id and ifname.
                yield path, path.read_bytes().decode()

    def held_by(self, container: str, ifname: str) -> list[Path]:
        wanted = f"{container}{LINE_BREAK}{ifname}"
        return [p for p, owner in self.allocations() if owner.strip() in (wanted, container)]


def _ip(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise ValueError(f"invalid IP address {text}") from None


def requested_ips(env: dict[str, str], conf: NetConf) -> list[ipaddress.IPv4Address]:
    """Addresses the runtime asks for, in the reference's order: CNI_ARGS, args, runtimeConfig."""
    wanted = []
    args = spec.load_args(env, {"IP": _ip})
    if "IP" in args:
        wanted.append(args["IP"])
    listed = [*(((conf.get("args") or {}).get("cni") or {}).get("ips") or []),
              *((conf.get("runtimeConfig") or {}).get("ips") or [])]
    for item in listed:
        try:
            wanted.append(ipaddress.IPv4Interface(str(item)).ip)
        except ValueError:
            raise CNIError(spec.INVALID_CONFIG, f"invalid IP address {item}") from None
    return list(dict.fromkeys(wanted))


def _store(env: dict[str, str], conf: NetConf) -> tuple[DiskStore, IpamConf]:
    spec.load_args(env, {"IP": _ip})
    ipam = conf.get("ipam") or {}
    if not conf.get("name"):
        raise CNIError(spec.INVALID_CONFIG, "network configuration has no name")
    return DiskStore(ipam.get("dataDir") or DEFAULT_DATA_DIR, conf["name"]), ipam


def add(env: dict[str, str], conf: NetConf) -> CniResult:
    store, ipam = _store(env, conf)
    container, ifname = env["CNI_CONTAINERID"], env["CNI_IFNAME"]
    rng = ranges(ipam)[0]
    wanted = requested_ips(env, conf)
    with store.locked():
        ip = allocate(store, rng, container, ifname, wanted)
    result: CniResult = {
        "cniVersion": conf["cniVersion"],
        "ips": [{"address": f"{ip}/{rng.subnet.prefixlen}", "gateway": str(rng.gateway)}],
        "dns": {},
    }
    if ipam.get("routes"):  # omitted when empty, as the reference's result is
        result["routes"] = [Route(**r) for r in ipam["routes"]]
    return result


def delete(env: dict[str, str], conf: NetConf) -> None:
    store, _ = _store(env, conf)
    with store.locked():
        for path in store.held_by(env["CNI_CONTAINERID"], env["CNI_IFNAME"]):
            path.unlink(missing_ok=True)


def check(env: dict[str, str], conf: NetConf) -> None:
    store, _ = _store(env, conf)
    if not store.held_by(env["CNI_CONTAINERID"], env["CNI_IFNAME"]):
        raise CNIError(spec.INTERNAL, "host-local: Failed to find address added by container "
                                      f"{env['CNI_CONTAINERID']}")


def main() -> None:
    spec.plugin_main(add, delete, check)


if __name__ == "__main__":
    main()
