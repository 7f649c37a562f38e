"""Random and mutated lab files, and the code `kgen render` runs on one.

A lab file is drawn in three steps: a lab the schema accepts (every optional
field present or not), then mutations of its structure (a wrong type at any
path, keys dropped or unknown, lists emptied or long), then mutations of its
text (YAML anchors, aliases, merge keys, tags, extra documents, a BOM, control
characters, huge numbers and strings, broken bytes). `render_outcome` runs the
text through load, validation, the desired cluster and rendering into a
temporary directory, exactly as `kgen render` does without Docker, and says
how it ended: a rendered lab, or the LabError `kgen render` prints.
"""

from __future__ import annotations

import copy
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from generator.cluster.build import build_state
from generator.cluster.network import NoFreeNetwork, choose_node_network
from generator.lab.errors import LabError
from generator.lab.model import load_lab
from generator.render.files import render

# A run that takes this long is a hang: the alarm stops it with HangError.
HANG_SECONDS = 20

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,6}[a-z0-9]", fullmatch=True)
PRIVATE_CIDRS = st.sampled_from(["10.244.0.0/16", "10.96.0.0/16", "10.0.0.0/8", "172.28.0.0/24",
                                 "192.168.0.0/24", "100.64.0.0/10", "10.1.0.0/30", "172.16.0.0/12"])
NAMESPACES = st.sampled_from(["default", "kube-system", "shop", "other"])
LABEL_MAPS = st.dictionaries(st.sampled_from(["team", "env"]), NAMES, max_size=2)
WEIRD_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
WRONG_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(allow_nan=True),
    st.sampled_from([24.0, 80.0, 2 ** 63, 2 ** 32, -1, 0, 65536, 16777216, 30000, 32768]),
    WEIRD_TEXT, st.sampled_from(["pod-9\n", "a" * 300, "10.244.0.0/016", "TCP ", "x\x00y"]),
    st.lists(st.integers(0, 9), max_size=3), st.dictionaries(NAMES, st.integers(0, 9), max_size=2),
    # builds, not just: a fresh object each time, since mutations change values in place
    st.builds(lambda: [{"name": "x"}]), st.builds(lambda: {"name": "x"}),
)


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A lab as a dict, mostly valid, with optional fields present or not."""
    maybe = st.booleans()
    nodes = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    doc: dict[str, Any] = {"name": draw(NAMES),
                           "nodes": [draw(st.sampled_from([n, {"name": n}, {"name": n, "zone": "a"}]))
                                     for n in nodes]}
    for key, values in (("podCIDR", PRIVATE_CIDRS), ("serviceCIDR", PRIVATE_CIDRS),
                        ("nodeNetwork", PRIVATE_CIDRS), ("nodeCIDRMaskSize", st.integers(1, 30)),
                        ("backend", st.sampled_from(["vxlan", "host-gw"])),
                        ("proxyMode", st.sampled_from(["iptables", "nftables"])),
                        ("nodeGracePeriod", st.integers(1, 3600)),
                        ("vxlan", st.fixed_dictionaries({"vni": st.integers(1, 16777215),
                                                         "port": st.integers(1, 65535)})),
                        ("loadBalancerPool", PRIVATE_CIDRS),
                        ("clusterDomain", st.sampled_from(["cluster.local", "lab.example", "x"])),
                        ("dns", st.fixed_dictionaries({}, optional={
                            "enabled": st.booleans(), "replicas": st.integers(0, 5),
                            "clusterIP": st.sampled_from(["10.96.0.10", "10.96.0.53"])})),
                        ("namespaces", st.lists(st.fixed_dictionaries(
                            {"name": NAMES}, optional={"labels": LABEL_MAPS}), max_size=2))):
        if draw(maybe):
            doc[key] = draw(values)
    labels = st.dictionaries(st.sampled_from(["app", "tier", "k8s.io/x"]),
                             st.one_of(NAMES, st.integers(0, 99)), max_size=2)
    pod_names = draw(st.lists(NAMES.map(lambda n: f"p-{n}"), max_size=5, unique=True))
    doc["pods"] = [{"name": n, "node": draw(st.sampled_from(nodes)), "labels": draw(labels),
                    **({"containers": [{"name": "c", "command": ["sleep", 1],
                                        **({"ports": draw(CONTAINER_PORTS)} if draw(maybe)
                                           else {})}]}
                       if draw(maybe) else {}),
                    **({"namespace": draw(NAMESPACES)} if draw(maybe) else {}),
                    **({"terminationGracePeriodSeconds": draw(st.integers(0, 600))}
                       if draw(maybe) else {})} for n in pod_names]
    doc["services"] = [draw(_services(labels, i)) for i in range(draw(st.integers(0, 3)))]
    if draw(maybe):
        doc["clients"] = draw(st.lists(NAMES.map(lambda n: f"c-{n}"), max_size=2, unique=True))
    if draw(maybe):
        doc["networkPolicies"] = draw(st.lists(_policies(), max_size=3))
    if draw(maybe):
        _place_on_hosts(draw, doc)
    return doc


def _place_on_hosts(draw: st.DrawFn, doc: dict[str, Any]) -> None:
    """`hosts` (contract section 11), with some nodes and clients placed by hand, now and
    then on a host that is not listed. Rendering never asks these engines."""
    hosts = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True))
    doc["hosts"] = [{"name": h, "docker": f"unix:///var/run/kgen-fuzz-{h}.sock"} for h in hosts]
    placed = st.one_of(st.none(), st.sampled_from([*hosts, "z"]))
    for key in ("nodes", "clients"):
        members = []
        for member in doc.get(key, []):
            name = member["name"] if isinstance(member, dict) else member
            host = draw(placed)
            members.append(member if host is None else {**({"name": name} if isinstance(
                member, str) else member), "host": host})
        if key in doc:
            doc[key] = members


CONTAINER_PORTS = st.lists(st.fixed_dictionaries(
    {"containerPort": st.integers(1, 65535)},
    optional={"name": st.sampled_from(["metrics", "http", "udp", "dns-tcp"]),
              "protocol": st.sampled_from(["TCP", "UDP", "SCTP"])}), max_size=2)
SELECTORS = st.one_of(st.just({}), st.builds(lambda labels: {"matchLabels": labels}, LABEL_MAPS),
                      st.sampled_from([{"matchExpressions": [{"key": "app", "operator": op,
                                                              "values": values}]}
                                       for op, values in (("In", ["web"]), ("NotIn", ["db"]),
                                                          ("Exists", []))]))
PEERS = st.one_of(st.builds(lambda s: {"podSelector": s}, SELECTORS),
                  st.builds(lambda s: {"namespaceSelector": s}, SELECTORS),
                  st.builds(lambda a, b: {"podSelector": a, "namespaceSelector": b},
                            SELECTORS, SELECTORS),
                  st.sampled_from([{"ipBlock": {"cidr": "10.244.0.0/16",
                                                "except": ["10.244.1.0/24"]}},
                                   {"ipBlock": {"cidr": "192.168.0.0/24"}}]))
POLICY_PORTS = st.lists(st.one_of(
    st.fixed_dictionaries({"port": st.integers(1, 65535)},
                          optional={"endPort": st.integers(1, 65535),
                                    "protocol": st.sampled_from(["TCP", "UDP", "SCTP"])}),
    st.fixed_dictionaries({"port": st.sampled_from(["http", "udp", "metrics"])},
                          optional={"protocol": st.sampled_from(["TCP", "UDP"])})), max_size=2)


@st.composite
def _policies(draw: st.DrawFn) -> dict[str, Any]:
    """A NetworkPolicy object: mostly valid, its namespace sometimes one no pod is in."""
    spec: dict[str, Any] = {"podSelector": draw(SELECTORS)}
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        if draw(st.booleans()):
            spec[direction] = [draw(st.fixed_dictionaries({}, optional={
                peers: st.lists(PEERS, max_size=2), "ports": POLICY_PORTS}))
                for _ in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):
        spec["policyTypes"] = draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    return {"metadata": {"name": draw(NAMES), "namespace": draw(NAMESPACES)}, "spec": spec}


@st.composite
def _services(draw: st.DrawFn, labels: st.SearchStrategy[dict[str, Any]], i: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
    ports = [{"name": f"p{j}", "port": draw(st.integers(1, 65535)),
              "protocol": draw(st.sampled_from(["TCP", "UDP"])),
              **({"nodePort": draw(st.integers(30000, 32767))}
                 if kind != "ClusterIP" and draw(st.booleans()) else {})}
             for j in range(draw(st.integers(1, 2)))]
    svc: dict[str, Any] = {"name": f"s{i}", "type": kind, "selector": draw(labels), "ports": ports}
    if draw(st.booleans()):
        svc["sessionAffinity"] = "ClientIP"
        svc["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": draw(st.integers(1, 86400))}}
    if kind != "ClusterIP" and draw(st.booleans()):
        svc["externalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local"]))
    optional = {"namespace": NAMESPACES, "clusterIP": st.sampled_from(["None", "10.96.0.77"]),
                "trafficDistribution": st.sampled_from(["PreferClose", "PreferSameZone",
                                                        "PreferSameNode"]),
                "externalIPs": st.lists(st.sampled_from(["172.28.0.220", "10.0.0.9"]), max_size=1)}
    if kind == "LoadBalancer":
        optional |= {"loadBalancerIP": st.sampled_from(["172.28.0.230", "192.168.0.230"]),
                     "loadBalancerSourceRanges": st.lists(PRIVATE_CIDRS, max_size=2)}
    for key, values in optional.items():
        if draw(st.booleans()):
            svc[key] = draw(values)
    return svc


def _places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path of the document: mapping keys and list indexes."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _places(item, (*path, i))


@st.composite
def mutated_docs(draw: st.DrawFn) -> Any:
    """A drawn lab with 0-3 structural mutations."""
    # A copy: strategies such as st.just() hand out the same object every time, and a
    # mutation of it would change the next examples (Hypothesis calls that flaky).
    doc: Any = copy.deepcopy(draw(valid_docs()))
    for _ in range(draw(st.integers(0, 3))):
        places = [p for p in _places(doc) if p]
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        how = draw(st.sampled_from(["wrong", "wrong", "drop", "unknown", "repeat", "share"]))
        if how == "wrong":
            parent[path[-1]] = draw(WRONG_VALUES)
        elif how == "drop":
            del parent[path[-1]]
        elif how == "unknown" and isinstance(parent, dict):
            parent[draw(st.one_of(WEIRD_TEXT, st.integers(0, 3), st.just("bad\nkey")))] = 1
        elif how == "repeat" and isinstance(parent, list):
            parent.extend([parent[path[-1]]] * draw(st.integers(1, 3)))
        elif how == "share":  # the same object twice: the dump writes an anchor and an alias
            inside = {id(c) for c in _containers(parent[path[-1]])}  # never into itself
            places2 = [p for p in _places(doc) if p and isinstance(_at(doc, p[:-1]), dict)
                       and id(_at(doc, p[:-1])) not in inside]
            target = draw(st.sampled_from(places2))
            _at(doc, target[:-1])[target[-1]] = parent[path[-1]]
    return doc


def _containers(value: Any) -> Iterator[Any]:
    if isinstance(value, dict | list):
        yield value
        for item in value.values() if isinstance(value, dict) else value:
            yield from _containers(item)


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


TEXT_EDITS = st.sampled_from(["none", "bom", "documents", "control", "tag", "merge", "recursive",
                              "bomb", "huge-number", "huge-string", "bad-bytes", "line", "duplicate",
                              "deep", "truncate"])


@st.composite
def lab_files(draw: st.DrawFn) -> bytes:
    """The bytes of a lab file: a dumped drawn lab, edited as text 0-2 times."""
    text = yaml.safe_dump(draw(mutated_docs()), sort_keys=False, allow_unicode=True,
                          default_flow_style=draw(st.sampled_from([None, True, False])))
    for _ in range(draw(st.integers(0, 2))):
        text = _edit(draw, draw(TEXT_EDITS), text)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()) and draw(st.booleans()):
        spot = draw(st.integers(0, len(data)))
        data = data[:spot] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xef\xbb\xbf"])) \
            + data[spot:]
    return data


def _edit(draw: st.DrawFn, how: str, text: str) -> str:
    lines = text.splitlines(keepends=True) or ["\n"]
    spot = draw(st.integers(0, len(lines)))
    insert = {
        "bom": lambda: "\ufeff" + text,
        "documents": lambda: text + draw(st.sampled_from(["---\nname: b\n", "...\n", "--- 1\n"])),
        "control": lambda: _at_char(draw, text, draw(st.sampled_from(
            ["\x00", "\t", "\r", "\x1b", "\x85", "\u2028", "\x7f", "\ufeff"]))),
        "tag": lambda: text.replace(": ", draw(st.sampled_from(
            [": !!float ", ": !!str ", ": !!int ", ": !foo ", ": !!binary ", ": !!set ",
             ": !!python/name:os.system ", ": !!timestamp ", ": !!null "])), 1),
        "merge": lambda: "base: &b {port: 80, name: x}\n" + text.replace(
            "- name:", "- <<: *b\n  name:", 1),
        "recursive": lambda: text.replace(": ", draw(st.sampled_from(
            [": &r [1, [2, *r]] #", ": &r {a: *r} #"])), 1),
        "bomb": lambda: _bomb(draw(st.integers(2, 9)), draw(st.integers(2, 9))) + text,
        "huge-number": lambda: text.replace(": ", ": " + draw(st.sampled_from(
            ["9" * 5000, "0x" + "f" * 5000, "9223372036854775808", "1e400", "-.inf", ".nan",
             "1_0", "0o777", "2001-13-45", "24.0"])) + " #", 1),
        "huge-string": lambda: text.replace(": ", ": " + "x" * draw(st.sampled_from(
            [70, 5000, 200_000])) + " #", 1),
        "line": lambda: "".join(lines[:spot] + [draw(st.sampled_from(
            ["  - {\n", "? [a, b]\n: c\n", "*undefined\n", "&a\n", "%YAML 1.1\n", "@x\n",
             "key: [unclosed\n", "\tname: tab\n"]))] + lines[spot:]),
        "duplicate": lambda: text + (lines[0] if lines[0].strip() else "name: z\n"),
        "deep": lambda: text + "deep: " + "[" * draw(st.integers(20, 1200)) + "]\n",
        "truncate": lambda: text[:draw(st.integers(0, len(text)))],
    }
    return insert[how]() if how in insert else text


def _at_char(draw: st.DrawFn, text: str, char: str) -> str:
    spot = draw(st.integers(0, len(text)))
    return text[:spot] + char + text[spot:]


def _bomb(levels: int, width: int) -> str:
    lines = ["l0: &l0 [lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


class HangError(Exception):
    """The run passed HANG_SECONDS."""


@contextmanager
def hang_guard(seconds: float = HANG_SECONDS) -> Iterator[None]:
    def stop(_signum: int, _frame: Any) -> None:
        raise HangError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Outcome:
    kind: str  # "rendered", "refused" (LabError), "no-network" (render's exit-1 failure)
    seconds: float
    lines: tuple[str, ...] = ()


def render_outcome(data: bytes) -> Outcome:
    """Load, validate, build and render `data` as `kgen render` does; any other exception
    (or HangError) propagates."""
    with tempfile.TemporaryDirectory(prefix="kgen-fuzz-") as tmp:
        source = Path(tmp) / "lab.yaml"
        source.write_bytes(data)
        start = time.perf_counter()
        with hang_guard():
            try:
                lab = load_lab(source)
                state = build_state(lab, choose_node_network(lab, None, []))
                render(lab, state, Path(tmp) / "out")
            except LabError as err:
                return Outcome("refused", time.perf_counter() - start, tuple(err.lines()))
            except NoFreeNetwork:
                return Outcome("no-network", time.perf_counter() - start)
        return Outcome("rendered", time.perf_counter() - start)
