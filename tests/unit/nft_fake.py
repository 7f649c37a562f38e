"""A model of one nftables table that applies kgen's `nft -f` transactions and dumps
the result as knftables' Fake does (kube-proxy's tests compare that dump), plus a
tracer in the style of kube-proxy's nftablesTracer for packet-flow tests."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from tests.unit.packet_flow import Outcome

OBJECT_ORDER = {"table": 10, "chain": 9, "rule": 8, "set": 7, "map": 6, "element": 5}


@dataclass
class Container:
    kind: str  # set | map
    spec: str
    elements: dict[str, tuple[str, str]] = field(default_factory=dict)  # key: (value, comment)


@dataclass
class Chain:
    spec: str
    rules: list[str] = field(default_factory=list)


class FakeTable:
    def __init__(self, family: str = "ip", name: str = "kube-proxy") -> None:
        self.prefix = f"{family} {name}"
        self.table: str | None = None
        self.chains: dict[str, Chain] = {}
        self.containers: dict[str, Container] = {}

    def apply(self, transaction: str) -> None:
        """All or nothing, like the kernel: a failing command leaves the table as it was."""
        saved = (self.table, {k: Chain(v.spec, list(v.rules)) for k, v in self.chains.items()},
                 {k: Container(v.kind, v.spec, dict(v.elements)) for k, v in self.containers.items()})
        try:
            for line in transaction.splitlines():
                if line.strip():
                    self._command(line.strip())
        except Exception:
            self.table, self.chains, self.containers = saved
            raise

    def _command(self, line: str) -> None:
        m = re.match(rf"^(add|flush|delete) (table|chain|rule|set|map|element) {self.prefix}(.*)$",
                     line)
        if not m:
            raise ValueError(f"not understood: {line}")
        verb, kind, rest = m.group(1), m.group(2), m.group(3).strip()
        if kind == "table":
            if rest or self.table is None:  # "add table" of an existing table keeps its comment
                self.table = rest
            return
        name, _, tail = rest.partition(" ")
        if kind == "chain":
            if verb == "add":
                self.chains.setdefault(name, Chain(tail))
            elif verb == "flush":
                self.chains[name].rules.clear()
            else:
                ref = re.compile(rf"(jump|goto) {re.escape(name)}(\s|$)")
                if any(ref.search(r) for c in self.chains.values() for r in c.rules) or any(
                        ref.search(v) for c in self.containers.values()
                        for v, _ in c.elements.values()):
                    raise ValueError(f"chain {name} is in use")
                del self.chains[name]
        elif kind == "rule":
            for target in re.findall(r"(?:jump|goto) (\S+)", tail):
                if target not in self.chains:
                    raise ValueError(f"No such file or directory: chain {target}")
            self.chains[name].rules.append(tail)
        elif kind in ("set", "map"):
            if verb == "add":
                self.containers.setdefault(name, Container(kind, tail))
            elif verb == "flush":
                self.containers[name].elements.clear()
            else:
                del self.containers[name]
        else:
            body = tail.strip()[1:-1].strip()
            key, value, note = body, "", ""
            if " : " in key:
                key, value = key.split(" : ", 1)
            cm = re.match(r'^(.*) comment "([^"]*)"$', key)
            if cm:
                key, note = cm.group(1), cm.group(2)
            elements = self.containers[name].elements
            if verb == "add":
                if key in elements and elements[key] != (value, note):
                    raise ValueError(f"element {key} of {name} exists")
                elements[key] = (value, note)
            else:
                del elements[key]

    def dump(self) -> str:
        p = self.prefix
        out = [f"add table {p} {self.table}"]
        out += [f"add chain {p} {n}{' ' + c.spec if c.spec else ''}"
                for n, c in sorted(self.chains.items())]
        out += [f"add {c.kind} {p} {n} {c.spec}" for n, c in sorted(self.containers.items())]
        out += [f"add rule {p} {n} {r}" for n, c in sorted(self.chains.items()) for r in c.rules]
        for n, c in sorted(self.containers.items()):
            for key, (value, note) in c.elements.items():
                text = key + (f' comment "{note}"' if note else "") + (f" : {value}" if value else "")
                out.append(f"add element {p} {n} {{ {text} }}")
        return "\n".join(out) + "\n"


def sort_transaction(text: str) -> str:
    """kube-proxy's sortNFTablesTransaction: drop blank and # lines; order by object type,
    then object name; rules keep their order; other same-named lines sorted whole."""
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]

    def key(item: tuple[int, str]) -> tuple:
        i, line = item
        words = line.split(" ")
        kind = words[1]
        return (-OBJECT_ORDER.get(kind, 0), words[4], i if kind == "rule" else 0,
                "" if kind == "rule" else line)

    return "\n".join(line for _, line in sorted(enumerate(lines), key=key)) + "\n"


# ---- packet flow

def _addr_in(ip: str, spec: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(spec.strip(), strict=False)


class Tracer:
    """Follows a new connection through the table the way kube-proxy's nftablesTracer
    does: filter-prerouting-pre-dnat (loadBalancerSourceRanges), nat-prerouting (or the
    -output chains for the node's own traffic), then filter-forward/input/output, then
    nat-postrouting."""

    def __init__(self, table: FakeTable, node_ips: set[str]) -> None:
        self.t, self.node_ips = table, node_ips

    def flow(self, src: str, dst: str, dport: int, proto: str = "tcp") -> set[Outcome]:
        outcomes = set()
        local_src = src in self.node_ips
        first = dict(src=src, dst=dst, dport=dport, proto=proto, mark=False, dnat=None)
        pre_dnat = "filter-output-pre-dnat" if local_src else "filter-prerouting-pre-dnat"
        if any(v in ("drop", "reject") for v, _ in self._chain(pre_dnat, first)):
            return {Outcome("DROP", False)}
        for verdict, pkt in self._chain("nat-output" if local_src else "nat-prerouting",
                                        dict(src=src, dst=dst, dport=dport, proto=proto,
                                             mark=False, dnat=None)):
            if verdict in ("drop", "reject"):
                outcomes.add(Outcome(verdict.upper(), False))
                continue
            # The filter hooks (priority 0) see the packet after DNAT.
            if local_src:
                hook = "filter-output"
            elif pkt["dst"] in self.node_ips:
                hook = "filter-input"
            else:
                hook = "filter-forward"
            filtered = [v for v, _ in self._chain(hook, pkt) if v in ("drop", "reject")]
            if filtered:
                outcomes.add(Outcome(filtered[0].upper(), False))
                continue
            masq = any(v == "masquerade" for v, _ in self._chain("nat-postrouting", pkt))
            outcomes.add(Outcome(pkt["dnat"] or "none", masq))
        return outcomes

    def _chain(self, name: str, pkt: dict) -> list[tuple[str | None, dict]]:
        """(verdict, packet) per path; verdict None when the chain falls through."""
        live = [pkt]
        results: list[tuple[str | None, dict]] = []
        for rule in self.t.chains[name].rules:
            still = []
            for p in live:
                for verdict, after, cont in self._rule(rule, p):
                    if cont:
                        still.append(after)
                    else:
                        results.append((verdict, after))
            live = still
        return results + [(None, p) for p in live]

    def _rule(self, rule: str, p: dict) -> list[tuple[str | None, dict, bool]]:
        """Outcomes: (verdict, packet, continue with the next rule?)."""
        r = re.sub(r' comment "[^"]*"$', "", rule)
        r = re.sub(r"^ct state new ", "", r)
        while True:
            m = re.match(r"^ip (saddr|daddr) (!= )?(\{ [^}]* \}|@\S+|\S+) ", r)
            if m and not r.startswith("ip daddr . ") and not m.group(3).startswith("."):
                addr = p["src"] if m.group(1) == "saddr" else p["dst"]
                target = m.group(3)
                if target.startswith("@"):
                    hit = target[1:] in self.t.containers and \
                        addr in self.t.containers[target[1:]].elements
                    if target[1:].startswith("affinity-"):
                        hit = False  # no affinity state yet: a first connection
                elif target.startswith("{"):
                    hit = any(_addr_in(addr, a.strip()) for a in target[1:-1].split(","))
                else:
                    hit = _addr_in(addr, target)
                if hit == bool(m.group(2)):
                    return [(None, p, True)]
                r = r[m.end():]
                continue
            m = re.match(r"^fib (saddr|daddr) type local ", r)
            if m:
                addr = p["src"] if m.group(1) == "saddr" else p["dst"]
                if addr not in self.node_ips:
                    return [(None, p, True)]
                r = r[m.end():]
                continue
            break
        m = re.match(r"^(ip daddr \. )?meta l4proto \. th dport vmap @(\S+)$", r)
        if m:
            key = (f"{p['dst']} . " if m.group(1) else "") + f"{p['proto']} . {p['dport']}"
            element = self.t.containers[m.group(2)].elements.get(key)
            if element is None:
                return [(None, p, True)]
            return self._verdict(element[0], p)
        m = re.match(r"^numgen random mod \d+ vmap \{ (.*) \}$", r)
        if m:
            out = []
            for entry in m.group(1).split(" , "):
                out += self._verdict(entry.split(" : ", 1)[1], p)
            return out
        m = re.match(r"^meta l4proto (\w+) dnat to (\S+)$", r)
        if m:
            ip, port = m.group(2).rsplit(":", 1)
            return [("dnat", dict(p, dnat=m.group(2), dst=ip, dport=int(port)), False)]
        if r.startswith("update @"):
            return [(None, p, True)]
        if r == f"mark set mark or {MASQ}":
            return [(None, dict(p, mark=True), True)]
        if r == f"mark and {MASQ} == 0 return":
            return [("return", p, False)] if not p["mark"] else [(None, p, True)]
        if r == f"mark set mark xor {MASQ}":
            return [(None, p, True)]
        if r == "masquerade fully-random":
            return [("masquerade", p, False)]
        return self._verdict(r, p)

    def _verdict(self, text: str, p: dict) -> list[tuple[str | None, dict, bool]]:
        word, _, target = text.partition(" ")
        if word in ("drop", "reject"):
            return [(word, p, False)]
        if word == "return":
            return [("return", p, False)]
        if word in ("jump", "goto"):
            out = []
            for verdict, after in self._chain(target, p):
                if verdict in (None, "return"):
                    # jump: back to the caller's next rule; goto: the caller's caller.
                    out.append((None, after, word == "jump"))
                else:
                    out.append((verdict, after, False))
            return out
        raise ValueError(f"rule not understood by the tracer: {text}")


MASQ = "0x4000"
