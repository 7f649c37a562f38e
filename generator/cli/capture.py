"""`kgen capture`: a pcap of an interface of a node, pod or client (docs/reference.md, `kgen capture`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from generator.cli.app import Exit, LabOption, app, complete_target, echo, failures
from generator.runtime.locate import find_lab


@app.command(context_settings={"ignore_unknown_options": True})
def capture(target: Annotated[str, typer.Argument(help="A node, client or pod.",
                                                 autocompletion=complete_target)],
            capture_filter: Annotated[list[str] | None, typer.Argument(
                metavar="FILTER", help="A tcpdump filter, e.g. udp port 4789.")] = None,
            lab: LabOption = None,
            iface: Annotated[str | None, typer.Option(
                "-i", "--interface", help="eth0 (default), cbr0 or vxlan on a node; eth0 of a "
                                          "pod or client; any interface name.")] = None,
            write: Annotated[str | None, typer.Option(
                "-w", "--write", help="pcap file, or '-' for stdout (e.g. | wireshark -k -i -). "
                                      "Default: kgen-<name>/captures/<target>-<iface>.pcap")] = None,
            count: Annotated[int, typer.Option("-c", "--count", help="Stop after N packets.")] = 100,
            duration: Annotated[float, typer.Option(
                "--duration", help="Stop after S seconds.")] = 10.0) -> None:
    """Capture packets on an interface of a node, pod or client; stops by itself."""
    from generator.capture import tcpdump

    with failures():
        ref = find_lab(lab)
        root = ref.paths.root
        cluster = ref.cluster()
        if cluster is None:
            if ref.given_file:
                ref.model()  # a bad lab file says so (exit 2)
            if ref.unreachable is not None:
                raise ref.unreachable
            raise Exit(1, f"lab {ref.name} is not running; run `kgen up {ref.file_flag}` first")
        try:
            tcpdump.check_bounds(count, duration)
            where = tcpdump.resolve(cluster, target, iface)
        except tcpdump.CaptureError as e:
            raise Exit(2, str(e)) from None
        if write == "-" and sys.stdout.isatty():
            raise Exit(2, "-w -: stdout is a terminal; pipe the pcap (| wireshark -k -i -) "
                          "or write it to a file with -w FILE")
        command = tcpdump.argv(where, count, duration, list(capture_filter or []))
        if write == "-":
            result = tcpdump.run(command, sys.stdout.buffer.fileno(), duration)
            path_text = "-"
        else:
            path = Path(write) if write else tcpdump.default_file(root, where)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as sink:
                result = tcpdump.run(command, sink, duration)
            path_text = str(path)
        if result.status != 0:
            raise Exit(1, f"capture on {target} {where.iface} failed (status {result.status}; "
                          "is the lab running and the interface there?)")
        hint = tcpdump.decode_hint(cluster, where, path_text if write != "-" else "FILE")
        if hint:
            print(f"kgen: {hint}", file=sys.stderr)
        if result.stopped_by_host:
            echo("the capture did not end in time and was stopped")
        if write != "-":
            print(path_text)
