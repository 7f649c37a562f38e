"""A trace for people (one line per hop, the verdict last) and for scripts (--json)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from generator.node.documents import TracePacket
from generator.trace.narrate import Hop
from generator.trace.verdict import Lookup, Result

if TYPE_CHECKING:
    from rich.console import Console

STYLES = {"dnat": "bold cyan", "masquerade": "bold magenta", "encap": "bold blue",
          "decap": "bold blue", "deliver": "bold green", "drop": "bold red", "reject": "bold red",
          "conntrack": "magenta", "route": "yellow", "policy": "dim", "leave-netns": "green",
          "send": "green", "wire": "blue", "arrive": "blue"}
VERDICT_STYLES = {"answered": "bold green", "refused": "bold yellow", "dropped": "bold red",
                  "timeout": "bold red"}


def title(result: Result) -> str:
    p = result.plan
    dst = f"{p.dst.ip}:{p.port}/{p.proto}" if p.port else f"{p.dst.ip}/{p.proto}"
    port = f"echo id {p.sport}" if p.proto == "icmp" else f"source port {p.sport}"
    return f"trace {p.src.name} ({result.src_ip or p.src.ip}) → {p.dst.name} ({dst}), {port}"


def packet_text(packet: TracePacket) -> str:
    return f"{packet['src']} → {packet['dst']}" if packet else ""


def verdict_line(result: Result) -> str:
    return f"verdict: {result.summary}"


def lookup_title(lookup: Lookup) -> str:
    p = lookup.query.plan
    return (f"DNS lookup: {p.src.name} ({lookup.query.src_ip or p.src.ip}) asks "
            f"{lookup.server}/udp for {p.probe_arg}, source port {p.sport}")


def tried_lines(lookup: Lookup) -> list[str]:
    """The search walk: each name asked and what came back."""
    return [f"  asked {t['name']}: {t['rcode']}"
            + (f" {', '.join(t['answers'])}" if t["answers"] else "") for t in lookup.tried]


def lookup_answer(lookup: Lookup) -> str:
    return f"answer: {lookup.query.summary}" if lookup.rcode else \
        f"answer: none ({lookup.query.summary})"


def hop_lines(hops: list[Hop], headings: tuple[str, str]) -> list[str]:
    """The request's hops, then the reply's, each under its heading."""
    lines: list[str] = []
    for direction, heading in zip(("request", "reply"), headings, strict=True):
        these = [h for h in hops if h.direction == direction]
        if not these:
            continue
        lines += ["", heading]
        shown: TracePacket | None = None
        for i, hop in enumerate(these, 1):
            # The packet's addresses after the hop, printed when they change.
            after = f"  [{packet_text(hop.packet)}]" if hop.packet != shown else ""
            shown = hop.packet
            lines.append(f"{i:>3}  {hop.detail}{after}")
    return lines


def as_text(result: Result) -> str:
    """Plain lines: what a pipe, a file or the README gets. Each hop's line is its detail,
    then the packet's addresses in brackets when the hop changed them. A lookup made
    first comes first, under its own heading."""
    lines: list[str] = []
    if result.dns is not None:
        lines += [lookup_title(result.dns), *tried_lines(result.dns)]
        lines += hop_lines(result.dns.query.hops, ("query", "answer"))
        lines += ["", lookup_answer(result.dns), ""]
    if result.hops or result.dns is None:
        lines.append(title(result))
        lines += hop_lines(result.hops, ("request", "reply"))
        lines.append("")
    lines.append(verdict_line(result))
    return "\n".join(lines)


def as_json(result: Result) -> str:
    return json.dumps(result.as_json(), indent=2)


def print_rich(console: Console, result: Result) -> None:
    from rich.text import Text

    if result.dns is not None:
        console.print(Text(lookup_title(result.dns), style="bold"))
        for line in tried_lines(result.dns):
            console.print(Text(line, style="dim"))
        print_hops(console, result.dns.query.hops, ("query", "answer"))
        console.print()
        console.print(Text(lookup_answer(result.dns),
                           style=VERDICT_STYLES.get(result.dns.query.verdict, "bold")))
        console.print()
    if result.hops or result.dns is None:
        console.print(Text(title(result), style="bold"))
        print_hops(console, result.hops, ("request", "reply"))
    console.print()
    console.print(Text(verdict_line(result), style=VERDICT_STYLES.get(result.verdict, "bold")))


def print_hops(console: Console, hops: list[Hop], headings: tuple[str, str]) -> None:
    from rich.table import Table
    from rich.text import Text

    for direction, heading in zip(("request", "reply"), headings, strict=True):
        these = [h for h in hops if h.direction == direction]
        if not these:
            continue
        table = Table(title=heading, title_justify="left", title_style="bold underline",
                      show_header=True, header_style="dim", box=None, pad_edge=False,
                      expand=False)
        table.add_column("#", justify="right", style="dim")
        table.add_column("node", style="bold", no_wrap=True)
        table.add_column("hop")
        table.add_column("packet after it", style="dim", no_wrap=True)
        shown: TracePacket | None = None
        for i, hop in enumerate(these, 1):
            packet = packet_text(hop.packet) if hop.packet != shown else ""
            shown = hop.packet
            detail = hop.detail
            prefix = f"{hop.node}: "
            if detail.startswith(prefix):
                detail = detail[len(prefix):]
            table.add_row(str(i), hop.node, Text(detail, style=STYLES.get(hop.step, "")), packet)
        console.print()
        console.print(table)
