"""`kgen graph`: the lab's topology as a picture (docs/reference.md, `kgen graph`).

What is drawn is gathered here and handed to generator.graph, which is pure
like generator.render: the running lab's cluster.json joined with its status
(from the registry snapshot `find_lab` already took: no Docker SDK), else the
lab file's desired cluster. From the lab file nothing asks Docker: the node
network is the lab's own, else the one an earlier render of `kgen-<name>/`
chose, else the first of the pool (what `kgen up` picks on a machine with no
other lab), so the same lab file and directory always give the same picture.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from generator.cli.app import Exit, LabOption, app, echo, failures
from generator.runtime.locate import LabRef, find_lab

if TYPE_CHECKING:
    from generator.graph.overlay import Overlay
    from generator.graph.picture import Picture
    from generator.lab.model import Lab
    from generator.node.contract import Cluster
    from generator.runtime.paths import LabPaths

FORMATS = ("svg", "png", "html", "mermaid", "dot")
TEXT_FORMATS = ("mermaid", "dot")   # printed unless -o says where


def desired_cluster(lab: Lab, out_dir: Path) -> Cluster:
    """The cluster the lab file describes, on the node network a render there would take."""
    from generator.cluster.build import build_state
    from generator.cluster.network import choose_node_network
    from generator.runtime.networks import previous_node_network

    return build_state(lab, choose_node_network(lab, previous_node_network(out_dir), []))


def lab_picture(ref: LabRef, from_file: bool) -> tuple[Picture, LabPaths]:
    """(what to draw, the directory it belongs to): the running lab's live picture unless
    `from_file` or nothing of it runs, else the lab file's."""
    from generator.graph.picture import from_cluster
    from generator.runtime.paths import LabPaths

    if from_file:  # the lab file's picture, beside it, whatever runs elsewhere
        from generator.cluster.names import rendered_dir

        paths = LabPaths(rendered_dir(ref.name))
        return from_cluster(desired_cluster(ref.model(), paths.root)), paths
    cluster = ref.cluster()
    if ref.is_up and cluster is not None and cluster.get("name") == ref.name:
        from generator.runtime.status import from_registry

        return from_cluster(cluster, from_registry(ref.paths, ref.name, ref.running)), ref.paths
    return from_cluster(desired_cluster(ref.model(), ref.paths.root)), ref.paths


def trace_overlay(picture: Picture, trace: Path) -> Overlay:
    from generator.graph.overlay import TraceFileError, build, load, mismatches

    try:
        doc = load(trace)
    except TraceFileError as e:
        raise Exit(2, str(e)) from None
    for problem in mismatches(picture, doc):
        echo(f"warning: {trace}: {problem}; drawn where the names say")
    return build(picture, doc)


def drawing(picture: Picture, fmt: str, overlay: Overlay | None) -> bytes:
    """The picture in `fmt`; svg, png and html need Graphviz's `dot`, and say so."""
    import graphviz

    from generator.runtime.errors import RuntimeFailure

    try:
        return _drawing(picture, fmt, overlay)
    except graphviz.ExecutableNotFound:
        raise RuntimeFailure("Graphviz's `dot` is not installed (svg, png and html need it; "
                             "--format dot and mermaid do not): install Graphviz: "
                             "apt-get install graphviz") from None


def _drawing(picture: Picture, fmt: str, overlay: Overlay | None) -> bytes:
    from generator.graph import dot

    if fmt == "dot":
        return dot.source(picture, overlay).encode()
    if fmt == "mermaid":
        from generator.graph.mermaid import mermaid

        return mermaid(picture, overlay).encode()
    if fmt == "html":
        from generator.graph.page import page

        return page(picture, dot.render(picture, "svg", overlay), overlay).encode()
    return dot.render(picture, fmt, overlay)


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
    """Draw the lab: nodes, pods, cbr0, the overlay, clients, services and their endpoints by
    namespace, the cluster DNS, LoadBalancer IPs and the nodes announcing them."""
    with failures():
        if fmt not in FORMATS:
            raise Exit(2, f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
        picture, paths = lab_picture(find_lab(lab), from_file)
        overlay = trace_overlay(picture, trace) if trace is not None else None
        data = drawing(picture, fmt, overlay)
        if output == "-" or (output is None and fmt in TEXT_FORMATS):
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        target = Path(output) if output else paths.root / f"graph.{fmt}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        echo(f"drawn from the {picture.source}")
        print(target)
