"""Lab lifecycle commands: render, up, down, status, exec, apply, image build.

Every command finds its lab with `find_lab` (generator.runtime.locate): a lab that
runs is acted on where it runs, from any directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from generator.cli.app import (
    Exit,
    LabOption,
    app,
    complete_lab,
    complete_target,
    echo,
    err,
    failures,
    out,
    output_dir,
)
from generator.cluster.names import rendered_dir
from generator.lab.errors import LabError
from generator.runtime.locate import DEFAULT_LAB_FILE, LabRef, find_lab

if TYPE_CHECKING:
    from generator.lab.model import Lab
    from generator.node.contract import Cluster
    from generator.runtime.paths import LabPaths

__all__ = ["LabRef", "find_lab"]

image_app = typer.Typer(help="The node image.", no_args_is_help=True)
app.add_typer(image_app, name="image")


def left_behind(name: str | None, flag: str) -> str:
    """For an interrupted command: what of the lab is on the engine, and how to clean it."""
    from generator.runtime.registry import running_labs

    found = running_labs(name) if name else []
    running = found[0] if found else None
    if running is None:
        return f"nothing of lab {name} was started" if name else "no lab was started"
    things = []
    if running.containers:
        things.append(f"{len(running.containers)} container(s), {running.running} running")
    if running.networks:
        things.append(f"network {', '.join(running.networks)}")
    what = "; ".join(things) or "its network"
    return f"lab {name} was left behind ({what}); remove it with `kgen down {flag}`"


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

        model = find_lab(lab).model()
        out_dir = output_dir(output) if output else rendered_dir(model.name)
        state = render(model, desired_cluster(model, out_dir), out_dir)
        if fmt == "clab":
            from generator.render.clab import render_clab

            render_clab(model, state, out_dir)
        print(out_dir)


TimeoutOption = Annotated[float | None, typer.Option(
    "--timeout", help="Seconds to wait for the lab to be ready (default: grows with its size).")]


def _wait(client: Any, paths: LabPaths, cluster: Cluster, what: str,
          timeout: float | None = None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from generator.runtime.up import wait_ready

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("[dim]{task.fields[waiting]}"),
                  console=err(), transient=True) as bar:
        task = bar.add_task(what, total=None, waiting="")

        def show(done: int, total: int, waiting: str) -> None:
            bar.update(task, completed=done, total=total, waiting=waiting)

        wait_ready(client, paths, cluster, show, timeout)


def _print_status(client: Any, paths: LabPaths, name: str) -> None:
    from generator.cli.tables import print_status
    from generator.runtime.status import status as lab_status

    print_status(out(), lab_status(client, paths, name))


def _redo(ref: LabRef) -> str:
    return f"run `kgen down {ref.flag}` then `kgen up {ref.file_flag}`"


def _up_paths(ref: LabRef, model: Lab, client: Any, force: bool) -> LabPaths:
    """Where `up` renders: the running lab's directory when it is the same lab, else
    ./kgen-<name>/; a different lab of the same name, or one whose fixed fields
    (podCIDR, backend, ...) were edited, is refused unless `force` replaces it."""
    from generator.runtime.apply import describe_changes, fixed_changes
    from generator.runtime.down import down as lab_down
    from generator.runtime.networks import desired_cluster
    from generator.runtime.paths import LabPaths

    here = LabPaths(rendered_dir(model.name))
    running = ref.running
    if running is None or not running.containers:
        return here
    where = running.file or running.dir
    if not ref.same_file(running):
        if not force:
            raise Exit(1, f"lab {model.name} is already running from {where} (directory "
                          f"{running.dir}); take it down with `kgen down -l {model.name}`, "
                          f"or replace it with `kgen up {ref.file_flag} --force`")
        reason = f"running from {where}"
    else:
        before = ref.paths.cluster()
        desired = desired_cluster(model, ref.paths.root)
        changed = fixed_changes(desired, before) if before is not None else []
        if not changed:
            return ref.paths
        assert before is not None
        what = describe_changes(changed, desired, before)
        if not force:
            raise Exit(1, f"{model.source}: {what} changed since lab {model.name} came up, "
                          f"which `kgen apply` cannot change: {_redo(ref)} "
                          f"(or `kgen up {ref.file_flag} --force`)")
        reason = f"{what} changed"
    for what in lab_down(client, model.name, ref.paths):
        echo(f"removed {what}")
    echo(f"replaced lab {model.name} ({reason})")
    return here if not ref.same_file(running) else ref.paths


def _start(paths: LabPaths, cluster: Cluster, model: Lab, attempts: int = 3) -> Cluster:
    """compose up; a node network that another network took since it was chosen (labs
    coming up side by side) is chosen afresh, at most `attempts` times in all."""
    from generator.render.files import render
    from generator.runtime import up as runtime_up
    from generator.runtime.errors import ComposeError
    from generator.runtime.networks import desired_cluster

    for attempt in range(1, attempts + 1):
        try:
            runtime_up.start(paths, cluster)
            return cluster
        except ComposeError as e:
            if "Pool overlaps" not in str(e) or model.node_network is not None or attempt == attempts:
                raise
        echo(f"node network {cluster['nodeNetwork']} was taken meanwhile; choosing another")
        cluster = render(model, desired_cluster(model, paths.root), paths.root)
    return cluster


@app.command()
def up(lab: LabOption = None,
       force: Annotated[bool, typer.Option(
           "--force", help="Replace a running lab of the same name that came from another "
                           "lab file, or whose ranges or backend were edited.")] = False,
       timeout: TimeoutOption = None) -> None:
    """Render if needed, build the node image if missing, start the lab and wait until ready."""
    seen: dict[str, LabRef] = {}

    def interrupted() -> str:
        ref = seen.get("ref")
        return left_behind(ref.name if ref else None, f"-l {ref.name}" if ref else "")

    with failures(interrupted):
        from generator.render.files import render
        from generator.runtime import up as runtime_up
        from generator.runtime.engine import docker_client
        from generator.runtime.hostgw import allow_host_gw
        from generator.runtime.image import ensure_node_image
        from generator.runtime.neighbours import make_room
        from generator.runtime.networks import desired_cluster, refuse_taken_node_network

        ref = find_lab(lab)
        model = ref.model()
        if model.name != ref.name and ref.file is not None:  # a running lab's file renamed it
            ref = find_lab(str(ref.file))
        seen["ref"] = ref
        client = docker_client()
        paths = _up_paths(ref, model, client, force)
        cluster = render(model, desired_cluster(model, paths.root), paths.root)
        refuse_taken_node_network(cluster)
        ensure_node_image(client, echo)
        runtime_up.ensure_bridge_netfilter()
        room = make_room(cluster)
        if room:
            echo(room)
        for what in runtime_up.remove_stale(client, cluster):
            echo(f"removed stale {what}")
        runtime_up.clear_stale_state(client, paths, cluster)
        echo(f"starting lab {model.name} ({len(cluster['nodes'])} nodes, "
             f"{len(cluster['pods'])} pods, {len(cluster['services'])} services)")
        cluster = _start(paths, cluster, model)
        allow_host_gw(client, cluster)
        _wait(client, paths, cluster, f"lab {model.name}", timeout)
        _print_status(client, paths, model.name)


def _warn(message: str) -> None:
    err().print(f"kgen: warning: {message}", markup=False, highlight=False, soft_wrap=True)


def _down_one(client: Any, name: str, paths: LabPaths | None) -> bool:
    from generator.runtime.down import down as lab_down

    removed = lab_down(client, name, paths)
    for what in removed:
        echo(f"removed {what}")
    print(f"lab {name} is down" + ("" if removed else " (nothing was running)"))
    return bool(removed)


@app.command()
def down(name: Annotated[str | None, typer.Argument(
             help="The lab's name (or lab file): the same as -l.", autocompletion=complete_lab,
             show_default=False)] = None,
         lab: LabOption = None,
         all_labs: Annotated[bool, typer.Option(
             "--all", help="Every kgen lab on this Docker engine.")] = False) -> None:
    """Remove the lab's containers, networks and state (idempotent; needs only its name)."""
    with failures(lambda: "run the same `kgen down` again to finish"):
        from generator.runtime.engine import docker_client
        from generator.runtime.paths import LabPaths
        from generator.runtime.registry import running_labs

        if name and lab and name != lab:
            raise Exit(2, f"give the lab once: {name!r} or -l {lab!r}")
        if all_labs:
            if name or lab:
                raise Exit(2, "--all takes every lab; give no lab with it")
            client = docker_client()
            labs = running_labs()
            if not labs:
                print("no kgen lab is running")
            for running in labs:
                _down_one(client, running.name, LabPaths(running.dir) if running.dir else None)
            return
        try:
            ref = find_lab(name or lab, name_only=True)
        except LabError as e:
            given = Path(name or lab or DEFAULT_LAB_FILE)
            if not given.is_file():
                raise
            # No name can be read from it, and no running lab records it: nothing to do.
            for line in e.lines():
                _warn(line)
            _warn(f"no running lab came up from {given}")
            print(f"nothing to take down for {given}")
            return
        if ref.given_file:
            try:
                ref.model()
            except LabError as e:
                for line in e.lines():
                    _warn(line)
                _warn(f"taking lab {ref.name} down by its name")
        _down_one(docker_client(), ref.name, ref.paths)


@app.command()
def status(lab: LabOption = None,
           as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """Nodes, pods, services (with endpoints) and clients of the lab."""
    with failures():
        from generator.cli.tables import print_status
        from generator.runtime.engine import docker_client
        from generator.runtime.status import status as lab_status

        ref = find_lab(lab)
        if ref.running is None and ref.given_file:
            ref.model()  # a bad lab file that does not run: say so (exit 2)
        report = lab_status(docker_client(), ref.paths, ref.name)
        if as_json:
            print(json.dumps(report, indent=2))
        elif not report["nodes"]:
            print(f"lab {ref.name}: nothing rendered or running; start it with "
                  f"`kgen up {ref.file_flag}`")
        else:
            print_status(out(), report)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_cmd(target: Annotated[str, typer.Argument(
                 help="A node, client or pod.", autocompletion=complete_target)],
             command: Annotated[list[str] | None, typer.Argument(
                 help="The command, after --; without one, a shell.", show_default=False)] = None,
             lab: LabOption = None) -> None:
    """Run a command (default: a shell) in a node, a client, or a pod's network namespace."""
    from generator.runtime.execute import exec_command, run_exec

    with failures():
        try:
            argv = exec_command(lab, target, command or [], sys.stdin.isatty())
        except LookupError as e:
            raise Exit(2, str(e.args[0])) from None
        run_exec(argv)


@app.command()
def apply(lab: LabOption = None, timeout: TimeoutOption = None) -> None:
    """Reconcile a running lab with its edited lab file, without restarting nodes."""
    with failures(lambda: "the lab keeps running; `kgen status` shows where it got to"):
        from generator.runtime.apply import check_appliable
        from generator.runtime.engine import docker_client

        ref = find_lab(lab)
        model = ref.model()
        before = ref.cluster()
        if ref.unreachable is not None:
            raise ref.unreachable
        if before is None or ref.running is None or not ref.running.running:
            raise Exit(1, f"lab {model.name} is not running; run `kgen up {ref.file_flag}`")
        if not ref.same_file(ref.running):
            raise Exit(1, f"lab {model.name} runs from {ref.running.file or ref.running.dir}, not "
                          f"from {ref.file}; apply edits to that file, or replace the lab with "
                          f"`kgen up {ref.file_flag} --force`")
        client = docker_client()
        cluster = check_appliable(model, before, ref.paths.root, _redo(ref))
        _wait(client, ref.paths, cluster, f"applying to {model.name}", timeout)
        _print_status(client, ref.paths, model.name)


@image_app.command("build")
def image_build(offline: Annotated[bool, typer.Option(
                    "--offline", help="Build without any container registry.")] = False,
                force: Annotated[bool, typer.Option(
                    "--force", help="Rebuild the base too.")] = False) -> None:
    """Build the node image (from debian:bookworm-slim, or offline with debootstrap)."""
    with failures(lambda: "the image build stopped; no lab was changed"):
        from generator.runtime.engine import docker_client
        from generator.runtime.image import ensure_node_image

        client = docker_client()
        tag = ensure_node_image(client, echo, offline=True if offline else None, force=force)
        size = client.images.get(tag).attrs.get("Size", 0)
        print(f"{tag} ({size / 1e6:.0f} MB)")
