"""`kgen graph`: the lab's topology as a picture (lab contract §6)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from generator.cli.app import Exit, LabOption, app, echo, failures
from generator.runtime.locate import find_lab

FORMATS = ("svg", "png", "html", "mermaid", "dot")
TEXT_FORMATS = ("mermaid", "dot")   # printed unless -o says where


@app.command()
def graph(lab: LabOption = None,
          output: Annotated[str | None, typer.Option(
              "-o", "--output", help="File to write ('-': stdout). Default: kgen-<name>/graph.<format> "
                                     "for svg, png and html; mermaid and dot are printed.")] = None,
          fmt: Annotated[str, typer.Option(
              "--format", help="svg (default), png, html, mermaid or dot.")] = "svg",
          trace: Annotated[Path | None, typer.Option(
              "--trace", help="A `kgen trace --json` result to draw on the picture.")] = None,
          from_file: Annotated[bool, typer.Option(
              "--from-file", help="Draw the lab file's desired cluster even when the lab runs.")] = False,
          ) -> None:
    """Draw the lab: nodes, pods, cbr0, the overlay, clients, services and their endpoints."""
    with failures():
        if fmt not in FORMATS:
            raise Exit(2, f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
        from generator.graph import dot, source
        from generator.graph.overlay import TraceFileError, build, load

        ref = find_lab(lab)
        paths = ref.paths
        if from_file:  # the lab file's picture, beside it, whatever runs elsewhere
            from generator.cluster.names import rendered_dir
            from generator.runtime.paths import LabPaths

            paths = LabPaths(rendered_dir(ref.name))
        picture = None
        if not from_file:
            client = source.engine()
            if client is not None:
                picture = source.from_running_lab(client, paths, ref.name)
        if picture is None:
            picture = source.from_lab_file(ref.model(), paths.root)
        overlay = None
        if trace is not None:
            from generator.graph.overlay import mismatches

            try:
                doc = load(trace)
            except TraceFileError as e:
                raise Exit(2, str(e)) from None
            for problem in mismatches(picture, doc):
                echo(f"warning: {trace}: {problem}; drawn where the names say")
            overlay = build(picture, doc)

        data: bytes
        if fmt == "dot":
            data = dot.source(picture, overlay).encode()
        elif fmt == "mermaid":
            from generator.graph.mermaid import mermaid

            data = mermaid(picture, overlay).encode()
        elif fmt == "html":
            from generator.graph.page import page

            data = page(picture, dot.render(picture, "svg", overlay), overlay).encode()
        else:
            data = dot.render(picture, fmt, overlay)

        if output == "-" or (output is None and fmt in TEXT_FORMATS):
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        target = Path(output) if output else paths.root / f"graph.{fmt}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        echo(f"drawn from the {picture.source}")
        print(target)
