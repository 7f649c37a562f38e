"""A `kgen trace --json` result laid on the picture (docs/reference.md, `kgen trace` and `kgen graph`).

Each hop is placed on an element of the picture: the pod, client, or node
device (eth0, cbr0, the overlay device) where it happened. The trace's own
fields decide where: the hop's node, its encapsulation, the packet's
addresses, and the words of its step. A hop that says nothing about a move
stays where the packet already is (netfilter hooks, routing decisions and
conntrack all act on the packet in place). The overlay then lists:

- moves: the path from element to element, numbered by hop, request and
  reply apart; a move between the overlay devices of two nodes is the
  encapsulated stretch and carries the outer addresses, port and VNI;
- marks: the translations (DNAT, SNAT/MASQUERADE, and conntrack's reverse
  translation of the reply), found from the rule and from the packet's
  addresses changing between hops;
- the end: a drop or refusal where it happened.

Keys the picture does not draw are accepted and left alone, so a trace from a
newer `kgen trace` still draws; two are told in words: the DNS lookup that
came first (`dns`: the name, the server, the answers) and a hop's
NetworkPolicy (`policy`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from generator.graph.picture import Picture, client_id, dev_id, pod_id
from generator.node.documents import TraceEncap, TraceEnd, TraceResult, TraceTarget

VERDICTS = ("answered", "refused", "dropped", "timeout")
DIRECTIONS = ("request", "reply")


class TraceFileError(ValueError):
    """A --trace file that is not a `kgen trace --json` result."""


@dataclass(frozen=True)
class Hop:
    number: int
    direction: str
    node: str
    step: str
    detail: str
    table: str | None
    chain: str | None
    rule: str | None
    src: str
    dst: str
    encap: TraceEncap | None
    policy: str | None = None        # the NetworkPolicy that decided this hop


@dataclass(frozen=True)
class Move:
    direction: str
    tail: str
    head: str
    hops: list[int]                  # the hop numbers that happen at the head
    encap: TraceEncap | None         # set on the encapsulated stretch
    swarm: TraceEncap | None = None  # a lab across hosts: the swarm's VXLAN around it all


@dataclass(frozen=True)
class Mark:
    element: str
    hop: int
    direction: str
    kind: str                        # DNAT, SNAT, MASQUERADE, un-DNAT, un-SNAT
    before: str
    after: str


@dataclass
class Overlay:
    src: TraceEnd
    dst: TraceTarget
    verdict: str
    answered_by: str | None
    hops: list[Hop]
    moves: list[Move] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    end: tuple[str, int] | None = None   # (element, hop) of a drop or refusal
    places: dict[int, str] = field(default_factory=dict)
    dns: str | None = None               # the lookup that came first, in words
    dst_is: str | None = None            # what the destination address is, when not a pod or service

    def title(self) -> str:
        dst = self.dst
        where = dst.get("ip") or ""
        if dst.get("port"):
            where += f":{dst['port']}"
        proto = str(dst.get("protocol") or "").upper()
        head = f"trace {self.src.get('name')} → {dst.get('name')} ({where} {proto})".replace(" )", ")")
        if self.dst_is:
            head += f", {self.dst_is}"
        tail = f"answered by {self.answered_by}" if self.answered_by else self.verdict
        if self.verdict != "answered":
            tail = self.verdict
        return f"{head}: {tail}"


def load(path: Path) -> TraceResult:
    try:
        doc = json.loads(path.read_text())
    except OSError as err:
        raise TraceFileError(f"{path}: cannot read trace file: {err.strerror}") from None
    except ValueError as err:
        raise TraceFileError(f"{path}: not JSON ({err})") from None
    check(doc, str(path))
    return cast(TraceResult, doc)  # check() above: the fields drawn are there


def check(doc: Any, source: str = "trace") -> None:
    """The shape of `kgen trace --json` (docs/reference.md), field by field."""
    def bad(where: str, what: str) -> TraceFileError:
        return TraceFileError(f"{source}: {where}: {what} (expected `kgen trace --json` output)")

    if not isinstance(doc, dict):
        raise bad("top level", "not an object")
    for key in ("src", "dst", "verdict", "hops"):
        if key not in doc:
            raise bad(key, "missing")
    for key in ("src", "dst"):
        if not isinstance(doc[key], dict) or "name" not in doc[key]:
            raise bad(key, "must be an object with a name")
    if doc["verdict"] not in VERDICTS:
        raise bad("verdict", f"{doc['verdict']!r} is not one of {', '.join(VERDICTS)}")
    if not isinstance(doc["hops"], list):
        raise bad("hops", "must be a list")
    for i, hop in enumerate(doc["hops"]):
        here = f"hops[{i}]"
        if not isinstance(hop, dict):
            raise bad(here, "not an object")
        if hop.get("direction") not in DIRECTIONS:
            raise bad(f"{here}.direction", f"{hop.get('direction')!r} is not request or reply")
        for key in ("node", "step"):
            if not isinstance(hop.get(key), str):
                raise bad(f"{here}.{key}", "must be a string")
        packet = hop.get("packet")
        if not isinstance(packet, dict) or not all(isinstance(packet.get(k), str)
                                                   for k in ("src", "dst")):
            raise bad(f"{here}.packet", "must be an object with src and dst")
        encap = hop.get("encap")
        if encap is not None and not (isinstance(encap, dict)
                                      and all(k in encap for k in ("src", "dst", "dport", "vni"))):
            raise bad(f"{here}.encap", "must be null or an object with src, dst, dport and vni")


def _ip(address: str) -> str:
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def _hops(doc: TraceResult) -> list[Hop]:
    return [Hop(i + 1, h["direction"], h["node"], h["step"], h.get("detail") or h["step"],
                h.get("table"), h.get("chain"), h.get("rule"), h["packet"]["src"],
                h["packet"]["dst"], h.get("encap"), _text_or_none(dict(h).get("policy")))
            for i, h in enumerate(doc["hops"])]


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def dns_lookup(doc: Any) -> str | None:
    """The trace's DNS lookup in words (`dns` of `kgen trace --json`), None without one;
    whatever of it is missing or not as documented is left out, never an error."""
    lookup = doc.get("dns") if isinstance(doc, dict) else None
    if not isinstance(lookup, dict) or not isinstance(lookup.get("name"), str):
        return None
    answers = lookup.get("answers")
    shown = ", ".join(a for a in answers if isinstance(a, str)) if isinstance(answers, list) else ""
    words = f"DNS {lookup['name']} → {shown or 'no address'}"
    if isinstance(lookup.get("server"), str):
        words += f" from {lookup['server']}"
    if isinstance(lookup.get("rcode"), str):
        words += f" ({lookup['rcode']})"
    hops = lookup.get("hops")
    if isinstance(hops, list) and hops:
        words += f", {len(hops)} hops"
    return words


def endpoint_element(picture: Picture, name: str | None, ip: str | None) -> str | None:
    """The element of a trace's src/dst or answeredBy: a pod, client, node or service."""
    if name:
        if picture.pod(name):
            return pod_id(name)
        if picture.client(name):
            return client_id(name)
        if picture.node(name):
            return dev_id(name, "eth0")
        service = picture.service(name)
        if service is not None:
            return service.id
    return picture.owner_of_ip(ip) if ip else None


# Steps are plain words, not a closed list (docs/reference.md leaves them to `kgen trace`);
# these are the words that move the packet. Anything else (a rule, a policy, conntrack)
# happens where the packet already is.
SEND_WORDS = ("leave-netns", "send", "leave", "egress")
DELIVER_WORDS = ("deliver", "receive", "socket", "answer")
OVERLAY_WORDS = ("decap", "encap", "vxlan", "tunnel")
# trace/hosts.py's hop between hosts: done by the engines, outside every node, so it
# happens where the packet already is and rides on the next move (the one across hosts).
SWARM_STEP = "swarm-overlay"
DEVICE = re.compile(r"\bdev ([A-Za-z0-9_.-]*[A-Za-z0-9_-])")


def _node_of_element(element: str | None) -> str | None:
    if element and element.startswith("node_"):
        return element[len("node_"):].rsplit("_", 1)[0]
    return None


def _place(picture: Picture, hop: Hop, here: str | None) -> str | None:
    """Where a hop happens, given where the packet was (None: nowhere yet)."""
    if hop.step == SWARM_STEP:
        return here
    if picture.client(hop.node):
        return client_id(hop.node)
    node = picture.node(hop.node)
    if node is None:
        return here
    step = hop.step.lower()
    if hop.encap is not None or any(w in step for w in OVERLAY_WORDS):
        return dev_id(node.name, "overlay")
    local = {p.ip: p.name for p in node.pods if p.ip}
    src_ip, dst_ip = _ip(hop.src), _ip(hop.dst)
    if any(w in step for w in SEND_WORDS) and src_ip in local and \
            here in (None, pod_id(local[src_ip])):
        return pod_id(local[src_ip])          # a pod puts the packet into its node
    if any(w in step for w in DELIVER_WORDS) and dst_ip in local:
        return pod_id(local[dst_ip])          # the node hands it to a pod
    if "bridge" in step:
        return dev_id(node.name, "cbr0")      # switched on cbr0
    if "wire" in step:
        return dev_id(node.name, "eth0")      # out onto the node network
    if "route" in step or "forward" in step:
        device = DEVICE.search(hop.detail)
        names = {"cbr0": "cbr0", "eth0": "eth0", picture.vxlan_device: "overlay"}
        if device and device.group(1) in names:
            return dev_id(node.name, names[device.group(1)])
    if here is not None and _node_of_element(here) == node.name:
        return here
    if here is not None and here.startswith("pod_"):
        pod = picture.pod(here[len("pod_"):])
        if pod is not None and pod.node == node.name:
            return dev_id(node.name, "cbr0")   # the pod's packet is in the node, on cbr0
    return dev_id(node.name, "eth0")           # it came from outside this node


def _outer(hop: Hop) -> bool:
    """The hop shows the encapsulating packet (node IP to node IP), not the pod's."""
    return hop.encap is not None and {_ip(hop.src), _ip(hop.dst)} == \
        {str(hop.encap.get("src")), str(hop.encap.get("dst"))}


def _translation(hop: Hop, before: Hop | None,
                 seen: set[str]) -> list[tuple[str, str, str]]:
    """(kind, before, after) for each translation this hop made: an address of the packet
    changed since the previous hop of its direction to one this direction had not held
    yet (for the first hop, its rule says so). A trace may show a packet before a
    translation that an earlier hop already announced (conntrack reverses a DNAT in
    POSTROUTING, after routing and FORWARD): going back to an address seen is no new one."""
    rule = (hop.rule or "").upper()
    reverse = hop.direction == "reply"
    if before is None:
        found = []
        if "-J DNAT" in rule or "DNAT TO" in rule:
            found.append(("DNAT", "?", hop.dst))
        if "-J MASQUERADE" in rule or " MASQUERADE" in rule or "-J SNAT" in rule:
            found.append(("MASQUERADE" if "MASQUERADE" in rule else "SNAT", "?", hop.src))
        return found
    found = []
    if before.dst != hop.dst and hop.dst not in seen:
        found.append(("un-SNAT" if reverse else "DNAT", before.dst, hop.dst))
    if before.src != hop.src and hop.src not in seen:
        kind = "un-DNAT" if reverse else ("MASQUERADE" if "MASQUERADE" in rule or
                                          "masquerade" in hop.step.lower() else "SNAT")
        found.append((kind, before.src, hop.src))
    return found


def build(picture: Picture, doc: TraceResult) -> Overlay:
    check(doc)
    hops = _hops(doc)
    src, dst = doc["src"], doc["dst"]
    overlay = Overlay(src, dst, doc["verdict"], doc.get("answeredBy"), hops,
                      dns=dns_lookup(doc), dst_is=_address_words(picture, dst.get("ip")))
    start = endpoint_element(picture, src.get("name"), src.get("ip"))
    answered = endpoint_element(picture, doc.get("answeredBy"), None)
    for direction in DIRECTIONS:
        here = start if direction == "request" else answered
        last: Hop | None = None
        prev_encap: TraceEncap | None = None
        swarm: TraceEncap | None = None       # the swarm's VXLAN the next move rides in
        before_first_move: list[int] = []   # hops where the packet starts: told on the first move
        reached = 0
        moved = False
        seen: set[str] = set()                # addresses this direction's packet has held
        for hop in (h for h in hops if h.direction == direction):
            place = _place(picture, hop, here)
            if place is None:
                continue
            overlay.places[hop.number] = place
            reached = hop.number
            if place != here and here is not None:
                encap = prev_encap if _crosses_overlay(here, place) else None
                overlay.moves.append(Move(direction, here, place,
                                          [*before_first_move, hop.number], encap, swarm))
                before_first_move, moved, swarm = [], True, None
            elif moved:
                overlay.moves[-1].hops.append(hop.number)
            else:
                before_first_move.append(hop.number)
            here = place
            if hop.step == SWARM_STEP:
                swarm = hop.encap
            elif hop.encap is not None:
                prev_encap = hop.encap
            if _outer(hop) or hop.step == SWARM_STEP:
                continue                      # the tunnels' addresses are no translation
            for kind, old, new in _translation(hop, last, seen):
                overlay.marks.append(Mark(place, hop.number, direction, kind, old, new))
            seen.update((hop.src, hop.dst))
            last = hop
        final = answered if direction == "request" else start
        if doc["verdict"] == "answered" and final is not None and here is not None and here != final:
            overlay.moves.append(Move(direction, here, final, before_first_move, None))
        if direction == "request" and doc["verdict"] != "answered" and here is not None:
            overlay.end = (here, reached)
    return overlay


def _address_words(picture: Picture, ip: str | None) -> str | None:
    """`loadBalancerIP of web-lb, announced by node-1`: a LoadBalancer IP or externalIP."""
    address = next((a for a in picture.addresses if a.ip == ip), None)
    if address is None:
        return None
    words = f"{address.kind} of {address.service_name}"
    return words + (f", announced by {address.announced_by}" if address.announced_by else "")


def mismatches(picture: Picture, doc: TraceResult) -> list[str]:
    """Where the trace and the picture disagree (a trace of another lab, or an older run)."""
    found = []
    ends: list[tuple[str, TraceEnd | TraceTarget]] = [("src", doc["src"]), ("dst", doc["dst"])]
    for key, end in ends:
        name, ip = end.get("name"), end.get("ip")
        element = endpoint_element(picture, name, None)
        if element is None and key == "dst" and ip and picture.owner_of_ip(ip):
            continue   # a name the trace resolved (DNS, a pod's FQDN): its address is ours
        if element is None:
            found.append(f"{key} {name!r} is not in lab {picture.name}")
            continue
        owner = picture.owner_of_ip(ip) if ip else None
        if ip and owner is None:
            found.append(f"{key} {name} has {ip} in the trace, no address of lab {picture.name}")
    nodes = {n.name for n in picture.nodes} | {c.name for c in picture.clients}
    strangers = sorted({h["node"] for h in doc.get("hops", [])} - nodes)
    if strangers:
        found.append(f"hops on {', '.join(strangers)}, which lab {picture.name} does not have")
    return found


def _crosses_overlay(a: str, b: str) -> bool:
    return a.endswith("_overlay") and b.endswith("_overlay") and _node_of_element(a) != \
        _node_of_element(b)
