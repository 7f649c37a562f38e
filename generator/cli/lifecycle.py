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


class Reporter:
    """runtime.up's Reporter on the terminal: lines on stderr, one transient
    progress line with counts and what is awaited."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.task: Any = None

    def say(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(f"[dim]·[/dim] {_escape(message)}", highlight=False,
                                   soft_wrap=True)
        else:
            echo(message)

    def progress(self, title: str, counts: list[tuple[str, int, int]], waiting: str) -> None:
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        if self.bar is None:
            self.bar = Progress(TextColumn("{task.description}"), TimeElapsedColumn(),
                                TextColumn("[dim]{task.fields[waiting]}"), console=err(),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task(title, waiting="")
        shown = ", ".join(f"{what} {done}/{total}" for what, done, total in counts)
        self.bar.update(self.task, description=f"{title}: {shown}", waiting=waiting)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _print_status(client: Any, paths: LabPaths, name: str) -> None:
    from generator.cli.tables import print_status
    from generator.runtime.status import status as lab_status

    print_status(out(), lab_status(client, paths, name))


def _print_phases(phases: list[tuple[str, float]], milestones: dict[str, float]) -> None:
    """`kgen up -v`: seconds per step, then when the nodes, pods and proxies were
    done, counted from the first container's start (the agents start with it)."""
    total = sum(seconds for _, seconds in phases)
    lines = ["phase        seconds"]
    lines += [f"{name:<12} {seconds:7.2f}" for name, seconds in phases]
    lines.append(f"{'total':<12} {total:7.2f}")
    for key, what in (("agents", "every node ready"), ("pods", "every pod running"),
                      ("proxies", "every proxy synced")):
        if key in milestones:
            lines.append(f"{key:<12} {milestones[key]:7.2f}  {what}, after containers started")
    err().print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


@app.command()
def up(lab: LabOption = None,
       force: Annotated[bool, typer.Option(
           "--force", help="Replace a running lab of the same name that came from another "
                           "lab file, or whose ranges or backend were edited.")] = False,
       timeout: TimeoutOption = None,
       verbose: Annotated[bool, typer.Option(
           "-v", "--verbose", help="Print the seconds each phase of up took.")] = False) -> None:
    """Render if needed, build the node image if missing, start the lab and wait until ready."""
    seen: dict[str, LabRef] = {}

    def interrupted() -> str:
        ref = seen.get("ref")
        return left_behind(ref.name if ref else None, f"-l {ref.name}" if ref else "")

    with failures(interrupted):
        from generator.runtime import up as runtime_up
        from generator.runtime.errors import Refused

        seen["ref"] = ref = runtime_up.resolve(lab)
        try:
            run = runtime_up.up(ref, Reporter(), force, timeout)
        except Refused as e:
            raise Exit(1, str(e)) from None
        if verbose:
            _print_phases(run.phases, run.milestones)
        paths, _ = run.lab()
        _print_status(run.client, paths, run.model.name)


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
        from generator.runtime.up import redo_hint, wait_for_lab

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
        cluster = check_appliable(model, before, ref.paths.root, redo_hint(ref))
        wait_for_lab(client, ref.paths, cluster, Reporter(), f"applying to {model.name}", timeout)
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
