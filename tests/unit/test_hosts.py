"""The lab file's `hosts` and each member's `host` (lab contract section 11)."""

from __future__ import annotations

from typing import Any

import pytest

from generator.lab.errors import LabError
from generator.lab.model import Host, parse_lab

TWO = [{"name": "a", "docker": "unix:///var/run/a.sock"}, {"name": "b", "docker": "ctx-b"}]


def lab(**fields: Any) -> dict[str, Any]:
    return {"name": "mh", "nodes": ["node-0", "node-1", "node-2"], **fields}


def errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(LabError) as caught:
        parse_lab(doc, "lab.yaml")
    return caught.value.lines()


def test_without_hosts_nothing_is_placed() -> None:
    parsed = parse_lab(lab(clients=["client-0"]))
    assert parsed.hosts == () and parsed.placement == {}


def test_members_spread_over_the_hosts_in_order_unless_placed() -> None:
    parsed = parse_lab(lab(hosts=TWO, nodes=["node-0", "node-1", {"name": "node-2", "host": "a"},
                                             "node-3"],
                           clients=["client-0", {"name": "client-1", "host": "a"}, "client-2"]))
    assert parsed.hosts == (Host("a", "unix:///var/run/a.sock"), Host("b", "ctx-b"))
    assert parsed.placement == {"node-0": "a", "node-1": "b", "node-2": "a", "node-3": "b",
                                "client-0": "a", "client-1": "a", "client-2": "a"}


def test_a_host_without_members_is_fine() -> None:
    parsed = parse_lab(lab(hosts=TWO, nodes=[{"name": "node-0", "host": "b"}]))
    assert parsed.placement == {"node-0": "b"}


def test_unknown_host_is_one_line_with_its_field_path() -> None:
    lines = errors(lab(hosts=TWO, nodes=["node-0", {"name": "node-1", "host": "c"}],
                       clients=[{"name": "client-0", "host": "z"}]))
    assert lines == ["lab.yaml: nodes[1].host: unknown host 'c' (hosts: a, b)",
                     "lab.yaml: clients[0].host: unknown host 'z' (hosts: a, b)"]


def test_a_host_field_without_hosts_says_to_add_them() -> None:
    assert errors(lab(nodes=[{"name": "node-0", "host": "a"}])) == [
        "lab.yaml: nodes[0].host: unknown host 'a' (hosts: none; add a `hosts` list)"]


def test_host_names_are_unique() -> None:
    assert errors(lab(hosts=[*TWO, {"name": "a", "docker": "x"}])) == [
        "lab.yaml: hosts[2].name: duplicate host 'a' (also at [0])"]


@pytest.mark.parametrize("bad, line", [
    ({"name": "a"}, "lab.yaml: hosts[0].docker: is required"),
    ({"name": "A", "docker": "x"}, "lab.yaml: hosts[0].name: "),
    ({"name": "a", "docker": ""}, "lab.yaml: hosts[0].docker: "),
    ({"name": "a", "docker": "x", "engine": "y"}, "lab.yaml: hosts[0].engine: unknown key"),
])
def test_a_bad_host_entry_is_one_line(bad: dict[str, Any], line: str) -> None:
    lines = errors(lab(hosts=[bad]))
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_an_empty_hosts_list_is_refused() -> None:
    lines = errors(lab(hosts=[]))
    assert len(lines) == 1 and lines[0].startswith("lab.yaml: hosts: "), lines
