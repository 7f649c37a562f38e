"""`kgen`: the command line (lab contract §2).

Exit status: 0 ok, 1 failure at run time, 2 bad lab file or usage.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from generator import lab as runtime
from generator import summary
from generator.compose import ComposeError
from generator.fields import LabError
from generator.image import ImageError, ensure_node_image
from generator.labfile import open_lab
from generator.model import Lab
from generator.render import lab_dir, render

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Kubernetes networking labs in Docker: nodes, pods, VXLAN, kube-proxy.")
image_app = typer.Typer(help="The node image.", no_args_is_help=True)
app.add_typer(image_app, name="image")

out = Console()
err = Console(stderr=True)

LabOption = Annotated[str | None, typer.Option(
    "-l", "--lab", help="Lab file, or the name of a built-in lab (default: ./lab.yaml, else demo).")]


class Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def failures() -> Iterator[None]:
    """Turn known errors into one line on stderr and the contract's exit status."""
    try:
        yield
    except LabError as e:
        err.print(f"kgen: {e}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except Exit as e:
        err.print(f"kgen: {e}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(e.code) from None
    except (runtime.RuntimeFailure, ComposeError, ImageError) as e:
        err.print(f"kgen: error: {e}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def echo(message: str) -> None:
    err.print(f"[dim]·[/dim] {message}", highlight=False)


def _paths(lab: Lab) -> runtime.LabPaths:
    return runtime.LabPaths(lab_dir(lab))


@app.command("render")
def render_cmd(lab: LabOption = None,
               output: Annotated[Path | None, typer.Option(
                   "-o", "--output", help="Directory (default ./kgen-<name>/).")] = None,
               fmt: Annotated[str, typer.Option(
                   "--format", help="compose (default) or clab.")] = "compose") -> None:
    """Validate the lab and write the compose file and every per-node file."""
    with failures():
        if fmt not in ("compose", "clab"):
            raise Exit(2, f"--format: {fmt!r} is not one of compose, clab")
        model = open_lab(lab)
        out_dir = output or lab_dir(model)
        state = render(model, out_dir)
        if fmt == "clab":
            from generator.clab import render_clab

            render_clab(model, state, out_dir)
        print(out_dir)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("[dim]{task.fields[waiting]}"),
                    console=err, transient=True)


def _wait(client: Any, paths: runtime.LabPaths, cluster: dict[str, Any], what: str) -> None:
    with _progress() as bar:
        task = bar.add_task(what, total=None, waiting="")

        def show(done: int, total: int, waiting: str) -> None:
            bar.update(task, completed=done, total=total, waiting=waiting)

        runtime.wait_ready(client, paths, cluster, show)


@app.command()
def up(lab: LabOption = None) -> None:
    """Render if needed, build the node image if missing, start the lab and wait until ready."""
    with failures():
        model = open_lab(lab)
        paths = _paths(model)
        cluster = render(model, paths.root)
        client = runtime.docker_client()
        runtime.refuse_taken_node_network(cluster)
        ensure_node_image(client, echo)
        runtime.ensure_bridge_netfilter()
        for what in runtime.remove_stale(client, cluster):
            echo(f"removed stale {what}")
        runtime.clear_stale_state(client, paths, cluster)
        echo(f"starting lab {model.name} ({len(cluster['nodes'])} nodes, "
             f"{len(cluster['pods'])} pods, {len(cluster['services'])} services)")
        runtime.start(paths, cluster)
        runtime.allow_host_gw(client, cluster)
        _wait(client, paths, cluster, f"lab {model.name}")
        summary.print_status(out, runtime.status(client, paths, model.name))


@app.command()
def down(lab: LabOption = None) -> None:
    """Remove the lab's containers, networks and state (idempotent)."""
    with failures():
        model = open_lab(lab)
        client = runtime.docker_client()
        removed = runtime.down(client, model.name, _paths(model))
        for what in removed:
            echo(f"removed {what}")
        print(f"lab {model.name} is down" + ("" if removed else " (nothing was running)"))


@app.command()
def status(lab: LabOption = None,
           as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """Nodes, pods, services (with endpoints) and clients of the lab."""
    with failures():
        model = open_lab(lab)
        report = runtime.status(runtime.docker_client(), _paths(model), model.name)
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            summary.print_status(out, report)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_cmd(target: Annotated[str, typer.Argument(help="A node, client or pod.")],
             command: Annotated[list[str], typer.Argument(help="The command, after --.")],
             lab: LabOption = None) -> None:
    """Run a command in a node, a client, or a pod's network namespace."""
    with failures():
        model = open_lab(lab)
        cluster = _paths(model).cluster()
        if cluster is None:
            raise Exit(1, f"lab {model.name} is not rendered; run `kgen up` first")
        try:
            argv = runtime.exec_argv(cluster, target, command, sys.stdin.isatty())
        except LookupError as e:
            raise Exit(2, str(e)) from None
    raise typer.Exit(runtime.run_exec(argv))


@app.command()
def apply(lab: LabOption = None) -> None:
    """Reconcile a running lab with its edited lab file, without restarting nodes."""
    with failures():
        model = open_lab(lab)
        paths = _paths(model)
        before = paths.cluster()
        client = runtime.docker_client()
        running = [c for c in runtime.lab_containers(client, model.name) if c.status == "running"]
        if before is None or not running:
            raise Exit(1, f"lab {model.name} is not running; run `kgen up`")
        from generator.reconcile import check_appliable

        cluster = check_appliable(model, before, paths.root)
        _wait(client, paths, cluster, f"applying to {model.name}")
        summary.print_status(out, runtime.status(client, paths, model.name))


@app.command()
def check(lab: LabOption = None,
          as_json: Annotated[bool, typer.Option("--json", help="Results as JSON.")] = False) -> None:
    """Run the connectivity and NAT checks against the running lab."""
    with failures():
        from generator.checks.runner import run_checks

        model = open_lab(lab)
        raise typer.Exit(run_checks(model, _paths(model), as_json, out))


@image_app.command("build")
def image_build(offline: Annotated[bool, typer.Option(
                    "--offline", help="Build without any container registry.")] = False,
                force: Annotated[bool, typer.Option(
                    "--force", help="Rebuild the base too.")] = False) -> None:
    """Build the node image (from debian:bookworm-slim, or offline with debootstrap)."""
    with failures():
        client = runtime.docker_client()
        tag = ensure_node_image(client, echo, offline=True if offline else None, force=force)
        size = client.images.get(tag).attrs.get("Size", 0)
        print(f"{tag} ({size / 1e6:.0f} MB)")


def _register_trace() -> None:
    from generator.trace.command import register

    register(app)


_register_trace()
