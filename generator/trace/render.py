"""A trace for people (one line per hop, the verdict last) and for scripts (--json)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from generator.node.documents import TracePacket
from generator.trace.verdict import Result

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


def as_text(result: Result) -> str:
    """Plain lines: what a pipe, a file or the README gets. Each hop's line is its detail,
    then the packet's addresses in brackets when the hop changed them."""
    lines = [title(result)]
    for direction in ("request", "reply"):
        hops = [h for h in result.hops if h.direction == direction]
        if not hops:
            continue
        lines += ["", direction]
        shown: TracePacket | None = None
        for i, hop in enumerate(hops, 1):
            # The packet's addresses after the hop, printed when they change.
            after = f"  [{packet_text(hop.packet)}]" if hop.packet != shown else ""
            shown = hop.packet
            lines.append(f"{i:>3}  {hop.detail}{after}")
    lines += ["", verdict_line(result)]
    return "\n".join(lines)


def as_json(result: Result) -> str:
    return json.dumps(result.as_json(), indent=2)


def print_rich(console: Console, result: Result) -> None:
    from rich.table import Table
    from rich.text import Text

    console.print(Text(title(result), style="bold"))
    for direction in ("request", "reply"):
        hops = [h for h in result.hops if h.direction == direction]
        if not hops:
            continue
        table = Table(title=direction, title_justify="left", title_style="bold underline",
                      show_header=True, header_style="dim", box=None, pad_edge=False,
                      expand=False)
        table.add_column("#", justify="right", style="dim")
        table.add_column("node", style="bold", no_wrap=True)
        table.add_column("hop")
        table.add_column("packet after it", style="dim", no_wrap=True)
        shown: TracePacket | None = None
        for i, hop in enumerate(hops, 1):
            packet = packet_text(hop.packet) if hop.packet != shown else ""
            shown = hop.packet
            detail = hop.detail
            prefix = f"{hop.node}: "
            if detail.startswith(prefix):
                detail = detail[len(prefix):]
            table.add_row(str(i), hop.node, Text(detail, style=STYLES.get(hop.step, "")), packet)
        console.print()
        console.print(table)
    console.print()
    console.print(Text(verdict_line(result), style=VERDICT_STYLES.get(result.verdict, "bold")))
