"""A small interpreter of kube-proxy rulesets, for packet-flow tests.

It follows a packet through nat KUBE-SERVICES (PREROUTING/OUTPUT), the filter
chains, and nat KUBE-POSTROUTING, modelling what the ruleset uses: -s/-d (with
!), -p/--dport, addrtype LOCAL, the masquerade mark, DNAT, REJECT/DROP.
`statistic` rules may or may not match, so the answer is the set of possible
endpoints; `recent --rcheck` never matches (no affinity state yet).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, replace


def parse(payload: str) -> dict[str, dict[str, list[list[str]]]]:
    tables: dict[str, dict[str, list[list[str]]]] = {}
    for name, body in re.findall(r"^\*(\w+)\n(.*?)^COMMIT$", payload, re.M | re.S):
        chains = tables.setdefault(name, {})
        for line in body.splitlines():
            if line.startswith(":"):
                chains.setdefault(line[1:].split()[0], [])
            elif line.startswith("-A "):
                words = shlex.split(line)
                chains.setdefault(words[1], []).append(words[2:])
    return tables


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    dport: int
    proto: str = "tcp"
    mark: bool = False
    dnat: str | None = None


@dataclass(frozen=True)
class Outcome:
    verdict: str  # "ip:port" after DNAT, "none" (no DNAT), "DROP" or "REJECT"
    masquerade: bool


def _in(addr: str, spec: str) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_network(spec, strict=False)


class Model:
    def __init__(self, payload: str, node_ips: set[str]) -> None:
        self.tables = parse(payload)
        self.node_ips = node_ips

    def _matches(self, words: list[str], p: Packet) -> bool | None:
        """True/False, or None for "maybe" (statistic)."""
        maybe = False
        i = 0
        while i < len(words):
            neg = words[i] == "!"
            w = words[i + 1] if neg else words[i]
            arg = words[i + 2] if neg else (words[i + 1] if i + 1 < len(words) else "")
            step = 3 if neg else 2
            ok = True
            if w == "-s":
                ok = _in(p.src, arg)
            elif w == "-d":
                ok = _in(p.dst, arg)
            elif w == "-p":
                ok = arg == p.proto
            elif w == "--dport":
                ok = int(arg) == p.dport
            elif w in ("--src-type", "--dst-type"):
                addr = p.src if w == "--src-type" else p.dst
                ok = (addr in self.node_ips) == (arg == "LOCAL")
            elif w == "--mark":
                ok = p.mark
            elif w == "--rcheck":
                ok, step = False, 1
            elif w == "--mode":
                maybe = True
            elif w == "-j":
                break
            else:
                step = 1
            if neg:
                ok = not ok
            if not ok:
                return False
            i += step
        return None if maybe else True

    def run(self, table: str, chain: str, p: Packet) -> list[tuple[str | None, Packet]]:
        """Outcomes as (terminal verdict or None when the chain returns, packet)."""
        results: list[tuple[str | None, Packet]] = []
        live = [p]
        for words in self.tables[table].get(chain, []):
            target = words[words.index("-j") + 1] if "-j" in words else None
            still = []
            for pkt in live:
                m = self._matches(words, pkt)
                if m is False:
                    still.append(pkt)
                    continue
                if m is None:
                    still.append(pkt)  # statistic: the rule may also not match
                for verdict, after in self._apply(table, target, words, pkt):
                    if verdict is None:
                        still.append(after)
                    elif verdict != "RETURN":
                        results.append((verdict, after))
                    else:
                        results.append((None, after))
            live = still
        return results + [(None, pkt) for pkt in live]

    def _apply(self, table: str, target: str | None, words: list[str],
               p: Packet) -> list[tuple[str | None, Packet]]:
        if target is None:
            return [(None, p)]
        if target == "MARK":
            return [(None, replace(p, mark="--or-mark" in words))]
        if target == "DNAT":
            # Later chains (filter, POSTROUTING) see the rewritten destination.
            to = words[words.index("--to-destination") + 1]
            ip, port = to.rsplit(":", 1)
            return [("DNAT", replace(p, dnat=to, dst=ip, dport=int(port)))]
        if target in ("DROP", "REJECT", "ACCEPT", "RETURN", "MASQUERADE"):
            return [(target, p)]
        return self.run(table, target, p)

    def flow(self, src: str, dst: str, dport: int, proto: str = "tcp") -> set[Outcome]:
        outcomes = set()
        for verdict, p in self.run("nat", "KUBE-SERVICES", Packet(src, dst, dport, proto)):
            if verdict in ("DROP", "REJECT"):
                outcomes.add(Outcome(verdict, False))
                continue
            filtered = self._filter(p)
            if filtered:
                outcomes.add(Outcome(filtered, False))
                continue
            masq = any(v == "MASQUERADE" for v, _ in self.run("nat", "KUBE-POSTROUTING", p))
            outcomes.add(Outcome(p.dnat or "none", masq))
        return outcomes

    def _filter(self, p: Packet) -> str | None:
        local_dst = p.dnat is None and p.dst in self.node_ips
        # KUBE-PROXY-FIREWALL drops what a KUBE-FW-* chain let through without DNAT.
        chains = ["KUBE-EXTERNAL-SERVICES"] if local_dst else ["KUBE-SERVICES",
                                                              "KUBE-EXTERNAL-SERVICES"]
        chains.append("KUBE-PROXY-FIREWALL")
        for chain in chains:
            for verdict, _ in self.run("filter", chain, p):
                if verdict in ("DROP", "REJECT"):
                    return verdict
        return None
