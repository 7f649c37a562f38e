"""`kgen logs [-l LAB] POD [-c CONTAINER]`: a pod container's output;
`kgen logs --export DIR [-l LAB]`: everything needed to debug the lab later."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from generator.cli.app import Exit, LabOption, app, err, failures


@app.command()
def logs(pod: Annotated[str | None, typer.Argument(
             help="The pod (not with --export).", show_default=False)] = None,
         container: Annotated[str | None, typer.Option(
             "-c", "--container", help="The pod's container (default: its first).")] = None,
         follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing.")] = False,
         tail: Annotated[int | None, typer.Option(
             "--tail", help="Only the last N lines.")] = None,
         export: Annotated[Path | None, typer.Option(
             "--export", metavar="DIR", help="Write every node's logs, datapath and the lab's "
             "status into DIR (new or empty), one directory per node.")] = None,
         lab: LabOption = None) -> None:
    """Print a pod container's output (stdout and stderr, across its restarts), or with
    --export DIR write everything needed to debug the lab after it is gone."""
    if export is not None:
        if pod is not None or container or follow or tail is not None:
            with failures():
                raise Exit(2, "--export takes the whole lab: give no POD, -c, -f or --tail")
        export_logs(lab, export)
        return
    if pod is None:
        with failures():
            raise Exit(2, "give a POD, or --export DIR for the whole lab")
    import subprocess

    from generator.runtime.logs import logs_command

    with failures():
        try:
            argv, note = logs_command(lab, pod, container, follow, tail)
        except LookupError as e:
            raise Exit(2, str(e.args[0])) from None
        if note:
            err().print(note, markup=False, highlight=False)
    raise typer.Exit(subprocess.call(argv))


def export_logs(lab: str | None, out: Path) -> None:
    with failures():
        import time

        from generator.runtime.engine import docker_client
        from generator.runtime.errors import RuntimeFailure
        from generator.runtime.export import export_lab
        from generator.runtime.locate import rendered_lab
        from generator.runtime.status import status

        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise Exit(2, f"--export {out}: not an empty directory; give a new or empty one")
        ref, cluster = rendered_lab(lab)
        if ref.running is None:
            raise RuntimeFailure(f"lab {ref.name} has no container on the engine: nothing to "
                                 f"export; run `kgen up {ref.file_flag}`")
        started = time.monotonic()
        client = docker_client()
        notes = export_lab(ref.paths, cluster, status(client, ref.paths, ref.name), out)
        for note in notes:
            err().print(f"kgen: warning: {note}", markup=False, highlight=False, soft_wrap=True)
        err().print(f"· exported lab {ref.name} ({len(cluster['nodes'])} nodes, "
                    f"{len(cluster['clients'])} clients) in {time.monotonic() - started:.1f} s",
                    markup=False, highlight=False, soft_wrap=True)
        print(out)
