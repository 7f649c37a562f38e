"""Where a lab's members run (lab contract section 11): `hosts`, and each node's and
client's `host`.

A lab is compiled once, for the whole cluster (addresses, pod subnets, rules), and
only then placed: each member gets a host, by hand or spread over the hosts in
order (netlab's multiserver plugin places a single topology the same way). A lab
without `hosts` runs on the local engine and has no placement at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from generator.lab.errors import Problem, describe

Doc = dict[str, Any]
MEMBER_KEYS = ("nodes", "clients")


def _hosts(data: Doc) -> list[tuple[int, str]]:
    raw = data.get("hosts")
    return [(i, h["name"]) for i, h in enumerate(raw if isinstance(raw, list) else [])
            if isinstance(h, dict) and isinstance(h.get("name"), str)]


def check_hosts(data: Doc) -> Iterator[Problem]:
    """Host names unique, every member's `host` one of them. A host without members is
    fine: its engine is still asked to be in the swarm."""
    hosts = _hosts(data)
    seen: dict[str, int] = {}
    for i, name in hosts:
        if name in seen:
            yield Problem(f"hosts[{i}].name", f"duplicate host {describe(name)} "
                                              f"(also at [{seen[name]}])")
        seen.setdefault(name, i)
    known = ", ".join(seen) if seen else "none; add a `hosts` list"
    for key in MEMBER_KEYS:
        items = data.get(key)
        for i, item in enumerate(items if isinstance(items, list) else []):
            host = item.get("host") if isinstance(item, dict) else None
            if isinstance(host, str) and host not in seen:
                yield Problem(f"{key}[{i}].host", f"unknown host {describe(host)} (hosts: {known})")


def placement(hosts: list[str], members: list[tuple[str, str | None]]) -> dict[str, str]:
    """member -> host: the one it asks for, else the hosts in turn by its place in the
    list (node-0 on the first host, node-1 on the second, ...). No hosts: no placement."""
    if not hosts:
        return {}
    return {name: wanted or hosts[i % len(hosts)] for i, (name, wanted) in enumerate(members)}


def members_with_hosts(data: Doc, key: str) -> list[tuple[str, str | None]]:
    """(name, host asked for or None) of the nodes or the clients of a valid document."""
    found: list[tuple[str, str | None]] = []
    for item in data.get(key) or []:
        if isinstance(item, dict):
            found.append((item["name"], item.get("host")))
        else:
            found.append((item, None))
    return found
