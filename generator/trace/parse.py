"""What the kernel printed, as data: trace records, conntrack entries, routes.

A *record* is one base chain evaluation of one packet on one node: the
`PACKET:` line that `xtables-monitor --trace` prints when a traced packet
enters a hook's chain (its headers at that moment), followed by the rule,
policy and return events of that evaluation. Trace ids are not unique per
packet (the kernel derives them from the skb, which is reused), so records
are delimited by `PACKET:` lines and events attach to the latest record with
their id. `nft monitor trace` prints the same events in nft syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import generator.node.conntrack as conntrack
from generator.node.documents import RouteAsked

BASE_CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
HOOK_ORDER = {name: i for i, name in enumerate(BASE_CHAINS)}
NFT_RETURN = "0xfffffffb"  # NFT_RETURN (-5) as xtables-monitor prints an unnamed verdict
TCP_FLAGS = ("SYN", "ACK", "FIN", "RST", "PSH", "URG")


@dataclass
class Event:
    table: str
    chain: str
    kind: str  # rule | policy | return
    verdict: str  # ACCEPT, DROP, CONTINUE, JUMP, GOTO, RETURN
    target: str | None  # chain jumped to
    rule: str | None  # the rule as iptables-save (or nft) prints it

    @property
    def comment(self) -> str | None:
        if not self.rule:
            return None
        found = re.search(r'--comment (?:"([^"]*)"|(\S+))', self.rule) or re.search(
            r'comment "([^"]*)"()', self.rule)
        return (found.group(1) or found.group(2)) if found else None


@dataclass
class Record:
    node: str
    trace_id: str
    hook: str  # the base chain: PREROUTING, FORWARD, ...
    fields: dict[str, str]
    flags: tuple[str, ...]
    events: list[Event] = field(default_factory=list)
    index: int = 0  # position in the node's output: the order the kernel saw things in

    @property
    def src(self) -> str:
        return self.fields.get("SRC", "")

    @property
    def dst(self) -> str:
        return self.fields.get("DST", "")

    @property
    def sport(self) -> int | None:
        v = self.fields.get("SPORT")
        return int(v) if v else None

    @property
    def dport(self) -> int | None:
        v = self.fields.get("DPORT")
        return int(v) if v else None

    @property
    def ip_id(self) -> int | None:
        v = self.fields.get("ID")
        return int(v) if v is not None else None

    @property
    def iif(self) -> str | None:
        return self.fields.get("IN")

    @property
    def oif(self) -> str | None:
        return self.fields.get("OUT")

    @property
    def table(self) -> str | None:
        return self.events[0].table if self.events else None

    def tuple(self) -> tuple[str, int | None, str, int | None]:
        return (self.src, self.sport, self.dst, self.dport)


# ---------------------------------------------------------------- xtables-monitor

_PACKET = re.compile(r"^PACKET: (\d+) ([0-9a-f]+) (.*)$")
_TRACE = re.compile(r"^\s*TRACE: (\d+) ([0-9a-f]+) (\S+)\s*(.*)$")
_KV = re.compile(r"([A-Z]+)=(\S+)")


def parse_xtables(node: str, lines: list[str]) -> list[Record]:
    records: list[Record] = []
    latest: dict[str, Record] = {}
    for line in lines:
        line = line.rstrip()
        m = _PACKET.match(line)
        if m:
            rest = m.group(3)
            fields = dict(_KV.findall(rest))
            words = rest.split()
            flags = tuple(w for w in words if w in TCP_FLAGS)
            rec = Record(node, m.group(2), "", fields, flags, index=len(records))
            records.append(rec)
            latest[rec.trace_id] = rec
            continue
        t = _TRACE.match(line)
        if not t:
            continue
        found = latest.get(t.group(2))
        parts = t.group(3).split(":")
        if found is None or len(parts) < 3:
            continue
        table, chain, kind = parts[:3]
        rest = t.group(4)
        tail = [p for p in parts[3:] if not (kind == "rule" and p.startswith("0x") and p != NFT_RETURN
                                            and p is parts[3])]
        verdict = tail[0] if tail else ""
        target = tail[1] if len(tail) > 1 else None
        rec = found
        if verdict == NFT_RETURN:
            verdict = "RETURN"
        rule = None
        if rest and kind == "rule":
            # " -4 -t nat -A CHAIN ..." → "-A CHAIN ..." as iptables-save prints it
            rule = re.sub(r"^-4 -t \S+ ", "", rest.strip())
        if not rec.events and chain in BASE_CHAINS:
            rec.hook = chain
        rec.events.append(Event(table, chain, kind, verdict.upper() if verdict else "",
                                target, rule))
    return [r for r in records if r.events]


# ---------------------------------------------------------------- nft monitor trace

_NFT_LINE = re.compile(r"^trace id ([0-9a-f]+) ip (\S+) (\S+) (packet|rule|verdict|policy|unknown)"
                       r":?\s*(.*)$")
_NFT_PACKET_FIELDS = [
    (r'iif "([^"]+)"', "IN"), (r'oif "([^"]+)"', "OUT"), (r"ip saddr (\S+)", "SRC"),
    (r"ip daddr (\S+)", "DST"), (r"(?:tcp|udp) sport (\d+)", "SPORT"),
    (r"(?:tcp|udp) dport (\d+)", "DPORT"), (r"ip id (\d+)", "ID"), (r"ip length (\d+)", "LEN"),
    (r"ether daddr (\S+)", "MACDST"), (r"ether saddr (\S+)", "MACSRC"),
]
TCP_FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20}


def nft_tcp_flags(text: str) -> tuple[str, ...]:
    """`tcp flags == 0x12` or `tcp flags == syn | ack`, as xtables-monitor names them."""
    found = re.search(r"tcp flags == (0x[0-9a-f]+|(?:[a-z]+\s*\|\s*)*[a-z]+)", text)
    if not found:
        return ()
    value = found.group(1)
    if value.startswith("0x"):
        bits = int(value, 16)
        return tuple(name for name in TCP_FLAGS if bits & TCP_FLAG_BITS.get(name, 0))
    named = {f.strip().upper() for f in value.split("|")}
    return tuple(name for name in TCP_FLAGS if name in named)
_NFT_HOOKS = [("postrouting", "POSTROUTING"), ("prerouting", "PREROUTING"), ("forward", "FORWARD"),
              ("input", "INPUT"), ("output", "OUTPUT"), ("pre", "PREROUTING"), ("out", "OUTPUT")]


def nft_hook(chain: str) -> str:
    """The hook of an nftables base chain, from its name (kube-proxy's `nat-prerouting`,
    `filter-output-pre-dnat`; a trace table's `pre` and `out`)."""
    return next((hook for word, hook in _NFT_HOOKS if word in chain), chain.upper())


def parse_nft(node: str, lines: list[str]) -> list[Record]:
    """`nft monitor trace` output (nftables mode): the same records, rules in nft syntax."""
    records: list[Record] = []
    latest: dict[str, Record] = {}
    for line in lines:
        m = _NFT_LINE.match(line.strip())
        if not m:
            continue
        tid, table, chain, kind, rest = m.groups()
        if kind == "packet":
            fields = {}
            for pattern, key in _NFT_PACKET_FIELDS:
                found = re.search(pattern, rest)
                if found:
                    fields[key] = found.group(1)
            flags = nft_tcp_flags(rest)
            rec = Record(node, tid, "", fields, flags, index=len(records))
            records.append(rec)
            latest[tid] = rec
            continue
        owner = latest.get(tid)
        if owner is None:
            continue
        rec = owner
        if kind == "rule":
            verdict_m = re.search(r"\(verdict (\w+)(?: (\S+))?\)\s*$", rest)
            verdict = (verdict_m.group(1) if verdict_m else "continue").upper()
            target = verdict_m.group(2) if verdict_m else None
            rule = re.sub(r"\s*\(verdict [^)]*\)\s*$", "", rest)
            ev = Event(table, chain, "rule", verdict, target, rule)
        elif kind == "policy":
            ev = Event(table, chain, "policy", rest.strip().upper(), None, None)
        else:
            v = rest.strip().split()
            ev = Event(table, chain, "return" if v and v[0] == "return" else "rule",
                       (v[0] if v else "").upper(), v[1] if len(v) > 1 else None, None)
            if ev.kind == "rule":
                continue  # a bare verdict line repeats what the rule line said
        if not rec.events:
            rec.hook = nft_hook(chain)
        rec.events.append(ev)
    return [r for r in records if r.events]


# ---------------------------------------------------------------- conntrack, routes

# `conntrack -L` lines: the node's own parser (the proxy's UDP cleanup reads them too).
Conntrack = conntrack.Entry
parse_conntrack = conntrack.parse

# One `ip -j route get` answer: iproute2's object (dst, gateway, dev, prefsrc, type, ...),
# or {"error": what ip said}.
RouteAnswer = dict[str, object]


def route_answer(route: RouteAsked) -> RouteAnswer:
    """An `ip -j route get` answer: its first entry, or {"error": ...}."""
    result = route.get("result")
    if isinstance(result, list) and result:
        return dict(result[0])
    if isinstance(result, dict):
        return dict(result)
    return {"error": "no answer"}
