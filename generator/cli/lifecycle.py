"""Lab lifecycle commands: render, up, down, status, exec, apply, image build."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from generator.cli.app import Exit, LabOption, app, echo, err, failures, out
from generator.cluster.names import rendered_dir
from generator.lab.resolve import open_lab

if TYPE_CHECKING:
    from generator.lab.model import Lab
    from generator.runtime.paths import LabPaths

image_app = typer.Typer(help="The node image.", no_args_is_help=True)
app.add_typer(image_app, name="image")


def lab_paths(model: Lab) -> LabPaths:
    from generator.runtime.paths import LabPaths

    return LabPaths(rendered_dir(model.name))


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
        from generator.render.files import render
        from generator.runtime.networks import desired_cluster

        model = open_lab(lab)
        out_dir = output or rendered_dir(model.name)
        state = render(model, desired_cluster(model, out_dir), out_dir)
        if fmt == "clab":
            from generator.render.clab import render_clab

            render_clab(model, state, out_dir)
        print(out_dir)


def _wait(client: Any, paths: LabPaths, cluster: dict[str, Any], what: str) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from generator.runtime.up import wait_ready

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("[dim]{task.fields[waiting]}"),
                  console=err(), transient=True) as bar:
        task = bar.add_task(what, total=None, waiting="")

        def show(done: int, total: int, waiting: str) -> None:
            bar.update(task, completed=done, total=total, waiting=waiting)

        wait_ready(client, paths, cluster, show)


def _print_status(client: Any, paths: LabPaths, name: str) -> None:
    from generator.cli.tables import print_status
    from generator.runtime.status import status as lab_status

    print_status(out(), lab_status(client, paths, name))


@app.command()
def up(lab: LabOption = None) -> None:
    """Render if needed, build the node image if missing, start the lab and wait until ready."""
    with failures():
        from generator.render.files import render
        from generator.runtime import up as runtime_up
        from generator.runtime.engine import docker_client
        from generator.runtime.hostgw import allow_host_gw
        from generator.runtime.image import ensure_node_image
        from generator.runtime.networks import desired_cluster, refuse_taken_node_network

        model = open_lab(lab)
        paths = lab_paths(model)
        cluster = render(model, desired_cluster(model, paths.root), paths.root)
        client = docker_client()
        refuse_taken_node_network(cluster)
        ensure_node_image(client, echo)
        runtime_up.ensure_bridge_netfilter()
        for what in runtime_up.remove_stale(client, cluster):
            echo(f"removed stale {what}")
        runtime_up.clear_stale_state(client, paths, cluster)
        echo(f"starting lab {model.name} ({len(cluster['nodes'])} nodes, "
             f"{len(cluster['pods'])} pods, {len(cluster['services'])} services)")
        runtime_up.start(paths, cluster)
        allow_host_gw(client, cluster)
        _wait(client, paths, cluster, f"lab {model.name}")
        _print_status(client, paths, model.name)


@app.command()
def down(lab: LabOption = None) -> None:
    """Remove the lab's containers, networks and state (idempotent)."""
    with failures():
        from generator.runtime.down import down as lab_down
        from generator.runtime.engine import docker_client

        model = open_lab(lab)
        removed = lab_down(docker_client(), model.name, lab_paths(model))
        for what in removed:
            echo(f"removed {what}")
        print(f"lab {model.name} is down" + ("" if removed else " (nothing was running)"))


@app.command()
def status(lab: LabOption = None,
           as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """Nodes, pods, services (with endpoints) and clients of the lab."""
    with failures():
        from generator.cli.tables import print_status
        from generator.runtime.engine import docker_client
        from generator.runtime.status import status as lab_status

        model = open_lab(lab)
        report = lab_status(docker_client(), lab_paths(model), model.name)
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            print_status(out(), report)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_cmd(target: Annotated[str, typer.Argument(help="A node, client or pod.")],
             command: Annotated[list[str], typer.Argument(help="The command, after --.")],
             lab: LabOption = None) -> None:
    """Run a command in a node, a client, or a pod's network namespace."""
    from generator.runtime.execute import exec_argv, run_exec

    with failures():
        model = open_lab(lab)
        cluster = lab_paths(model).cluster()
        if cluster is None:
            raise Exit(1, f"lab {model.name} is not rendered; run `kgen up` first")
        try:
            argv = exec_argv(cluster, target, command, sys.stdin.isatty())
        except LookupError as e:
            raise Exit(2, str(e)) from None
    raise typer.Exit(run_exec(argv))


@app.command()
def apply(lab: LabOption = None) -> None:
    """Reconcile a running lab with its edited lab file, without restarting nodes."""
    with failures():
        from generator.runtime.apply import check_appliable
        from generator.runtime.engine import docker_client, lab_containers

        model = open_lab(lab)
        paths = lab_paths(model)
        before = paths.cluster()
        client = docker_client()
        running = [c for c in lab_containers(client, model.name) if c.status == "running"]
        if before is None or not running:
            raise Exit(1, f"lab {model.name} is not running; run `kgen up`")
        cluster = check_appliable(model, before, paths.root)
        _wait(client, paths, cluster, f"applying to {model.name}")
        _print_status(client, paths, model.name)


@image_app.command("build")
def image_build(offline: Annotated[bool, typer.Option(
                    "--offline", help="Build without any container registry.")] = False,
                force: Annotated[bool, typer.Option(
                    "--force", help="Rebuild the base too.")] = False) -> None:
    """Build the node image (from debian:bookworm-slim, or offline with debootstrap)."""
    with failures():
        from generator.runtime.engine import docker_client
        from generator.runtime.image import ensure_node_image

        client = docker_client()
        tag = ensure_node_image(client, echo, offline=True if offline else None, force=force)
        size = client.images.get(tag).attrs.get("Size", 0)
        print(f"{tag} ({size / 1e6:.0f} MB)")
