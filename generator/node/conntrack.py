"""`conntrack -L` lines as data (standard library only): one parser for the proxy's
UDP cleanup on the node and for `kgen trace` on the host.

A line names the original direction first and the reply second, each as
`src= dst= sport= dport=` (ICMP: `type= code= id=`, where the echo id stands for
both ports), e.g. `udp 17 29 src=10.0.0.2 dst=10.96.0.10 sport=40000 dport=53
src=10.244.1.2 dst=10.0.0.2 sport=5353 dport=40000 mark=0 use=1` (one line).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# (source address, source port, destination address, destination port)
Tuple4 = tuple[str, int | None, str, int | None]


@dataclass(frozen=True)
class Entry:
    line: str
    proto: str  # tcp | udp | icmp | ...
    orig: Tuple4
    reply: Tuple4
    state: str | None  # TCP's state (ESTABLISHED, TIME_WAIT, ...); None for the others


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _side(pairs: list[tuple[str, str]]) -> Tuple4:
    fields = dict(pairs)
    sport = fields.get("sport") or fields.get("id")
    dport = fields.get("dport") or fields.get("id")
    return (fields.get("src", ""), _int(sport), fields.get("dst", ""), _int(dport))


def parse(lines: Iterable[str]) -> list[Entry]:
    """Every entry among `lines`; other lines (conntrack's own summary) are skipped."""
    out = []
    for line in lines:
        words = line.split()
        if len(words) < 3:
            continue
        pairs = [(key, value) for key, sep, value in (w.partition("=") for w in words) if sep]
        starts = [i for i, (key, _) in enumerate(pairs) if key == "src"]
        if len(starts) < 2:
            continue
        state = words[3] if len(words) > 3 and words[3].isupper() else None
        out.append(Entry(line.strip(), words[0], _side(pairs[starts[0]:starts[1]]),
                         _side(pairs[starts[1]:]), state))
    return out
