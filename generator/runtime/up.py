"""`kgen up` as a named list of steps (netlab's augment/main.py keeps its own so).

    place    where the lab runs: the running lab's directory, else ./kgen-<name>/;
             a different lab of the same name, or edited fixed fields, refused
             unless --force replaces it
    render   the desired cluster on a free node network, written out
    image    the node image, built when missing
    host     the kernel's bridge netfilter, room in the neighbour table
    stale    leftovers of another run that would clash, and stale agent documents
    network  the node network (another /24 when one was taken meanwhile)
    create   every container, created and started a few at a time
    host-gw  the host's one firewall rule (backend host-gw only)
    ready    until every node is ready, every pod runs and every proxy has synced

Each step takes the run and leaves what it found in it; `up()` times them,
and the command line prints the table with `kgen up -v`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from generator.cluster.names import project_name, rendered_dir
from generator.runtime.errors import NetworkTaken, Refused
from generator.runtime.paths import LabPaths

if TYPE_CHECKING:
    from generator.lab.model import Lab
    from generator.node.contract import Cluster
    from generator.runtime.locate import LabRef

NETWORK_ATTEMPTS = 3  # node networks tried when labs come up side by side


class Reporter(Protocol):
    """How a step tells the user what it does and what it waits for."""

    def say(self, message: str) -> None: ...

    def progress(self, title: str, counts: list[tuple[str, int, int]], waiting: str) -> None: ...

    def done(self) -> None: ...


@dataclass
class UpRun:
    ref: LabRef
    model: Lab
    report: Reporter
    force: bool = False
    timeout: float | None = None
    client: Any = None
    paths: LabPaths | None = None
    cluster: Cluster | None = None
    phases: list[tuple[str, float]] = field(default_factory=list)
    milestones: dict[str, float] = field(default_factory=dict)  # seconds after containers started
    containers_started_at: float = 0.0

    def lab(self) -> tuple[LabPaths, Cluster]:
        assert self.paths is not None and self.cluster is not None
        return self.paths, self.cluster


def redo_hint(ref: LabRef) -> str:
    return f"run `kgen down {ref.flag}` then `kgen up {ref.file_flag}`"


def place(run: UpRun) -> None:
    from generator.runtime.apply import describe_changes, fixed_changes
    from generator.runtime.down import down as lab_down
    from generator.runtime.networks import desired_cluster

    ref, model = run.ref, run.model
    here = LabPaths(rendered_dir(model.name))
    running = ref.running
    run.paths = here
    if running is None or not running.containers:
        return
    where = running.file or running.dir
    if not ref.same_file(running):
        if not run.force:
            raise Refused(f"lab {model.name} is already running from {where} (directory "
                          f"{running.dir}); take it down with `kgen down -l {model.name}`, "
                          f"or replace it with `kgen up {ref.file_flag} --force`")
        reason = f"running from {where}"
    else:
        before = ref.paths.cluster()
        desired = desired_cluster(model, ref.paths.root)
        changed = fixed_changes(desired, before) if before is not None else []
        if not changed:
            run.paths = ref.paths
            return
        assert before is not None
        what = describe_changes(changed, desired, before)
        if not run.force:
            raise Refused(f"{model.source}: {what} changed since lab {model.name} came up, "
                          f"which `kgen apply` cannot change: {redo_hint(ref)} "
                          f"(or `kgen up {ref.file_flag} --force`)")
        reason = f"{what} changed"
    for what in lab_down(run.client, model.name, ref.paths):
        run.report.say(f"removed {what}")
    run.report.say(f"replaced lab {model.name} ({reason})")
    run.paths = here if not ref.same_file(running) else ref.paths


def render_lab(run: UpRun) -> None:
    from generator.render.files import render
    from generator.runtime.networks import desired_cluster, refuse_taken_node_network

    assert run.paths is not None
    run.cluster = render(run.model, desired_cluster(run.model, run.paths.root), run.paths.root)
    refuse_taken_node_network(run.cluster)


def image(run: UpRun) -> None:
    from generator.runtime.image import ensure_node_image

    ensure_node_image(run.client, run.report.say)


def host(run: UpRun) -> None:
    from generator.runtime.neighbours import make_room
    from generator.runtime.stale import ensure_bridge_netfilter

    ensure_bridge_netfilter()
    room = make_room(run.lab()[1])
    if room:
        run.report.say(room)


def stale(run: UpRun) -> None:
    from generator.runtime.stale import clear_stale_state, remove_stale

    paths, cluster = run.lab()
    for what in remove_stale(run.client, cluster):
        run.report.say(f"removed stale {what}")
    clear_stale_state(run.client, paths, cluster)


def network(run: UpRun) -> None:
    """Create the node network; one that another network took since it was chosen
    (labs coming up side by side) is chosen afresh, at most NETWORK_ATTEMPTS times."""
    from generator.render.files import render
    from generator.runtime.create import ensure_network, load, network_spec
    from generator.runtime.networks import desired_cluster

    for attempt in range(1, NETWORK_ATTEMPTS + 1):
        paths, cluster = run.lab()
        try:
            doc = load(paths.compose_file)
            ensure_network(run.client, network_spec(doc, project_name(cluster["name"])))
            return
        except NetworkTaken:
            if run.model.node_network is not None or attempt == NETWORK_ATTEMPTS:
                raise
        run.report.say(f"node network {cluster['nodeNetwork']} was taken meanwhile; "
                       "choosing another")
        run.cluster = render(run.model, desired_cluster(run.model, paths.root), paths.root)


def create(run: UpRun) -> None:
    from generator.runtime.create import container_specs, create_all, load

    paths, cluster = run.lab()
    specs = container_specs(load(paths.compose_file), project_name(cluster["name"]),
                            paths.compose_file)
    run.report.say(f"starting lab {cluster['name']} ({len(cluster['nodes'])} nodes, "
                   f"{len(cluster['pods'])} pods, {len(cluster['services'])} services)")
    run.containers_started_at = time.monotonic()

    def show(done: int, total: int, name: str) -> None:
        run.report.progress(f"lab {cluster['name']}", [("containers", done, total)],
                            f"last: {name}")

    counts = create_all(run.client, specs, show)
    run.report.done()
    kept = f", {counts['kept']} already running" if counts["kept"] else ""
    run.report.say(f"{counts['created'] + counts['started']} containers started{kept}")


def host_gw(run: UpRun) -> None:
    from generator.runtime.hostgw import allow_host_gw

    allow_host_gw(run.client, run.lab()[1])


def ready(run: UpRun) -> None:
    from generator.runtime.up_hosts import stopped

    paths, cluster = run.lab()
    began = time.monotonic()
    waited = wait_for_lab(run.client, paths, cluster, run.report, f"lab {cluster['name']}",
                          run.timeout, stopped(run) if run.model.hosts else None)
    run.milestones = {k: v + began - run.containers_started_at for k, v in waited.items()}


def wait_for_lab(client: Any, paths: LabPaths, cluster: Cluster, report: Reporter,
                 title: str, timeout: float | None = None,
                 stopped: Callable[[], list[str]] | None = None) -> dict[str, float]:
    """`ready` for `up` and for `apply`: progress with counts and what it waits for."""
    from generator.runtime.ready import Readiness, default_timeout, stopped_members, wait_ready

    limit = default_timeout(cluster) if timeout is None else timeout

    def show(found: Readiness, waited: float) -> None:
        missing = found.missing
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        report.progress(title, found.counts(), f"waiting for {', '.join(missing[:3])}{more} "
                        f"({waited:.0f} of {limit:.0f} s)" if missing else "")

    try:
        return wait_ready(stopped or stopped_members(client, cluster["name"]), paths.state_dir,
                          cluster, show, limit)
    finally:
        report.done()


Step = Callable[[UpRun], None]
UP_STEPS: list[tuple[str, Step]] = [
    ("place", place), ("render", render_lab), ("image", image), ("host", host),
    ("stale", stale), ("network", network), ("create", create), ("host-gw", host_gw),
    ("ready", ready),
]


def _hosts_steps() -> list[tuple[str, Step]]:
    """The steps of a lab that spans hosts (runtime/up_hosts.py): rendered as on one
    engine, then placed on each host's engine."""
    from generator.runtime import up_hosts

    return [("place", place), ("render", render_lab), ("engines", up_hosts.engines),
            ("image", up_hosts.image), ("network", up_hosts.network),
            ("create", up_hosts.create), ("ready", ready)]


def resolve(lab: str | None) -> LabRef:
    """The lab `up` means: `-l` as every command reads it, except that a running lab
    whose file now names another lab is looked up by that file."""
    from generator.runtime.locate import find_lab

    ref = find_lab(lab)
    if ref.model().name != ref.name and ref.file is not None:
        ref = find_lab(str(ref.file))
    return ref


def up(ref: LabRef, report: Reporter, force: bool = False,
       timeout: float | None = None) -> UpRun:
    """Run UP_STEPS in order; the run records each step's seconds in `phases`."""
    from generator.runtime.engine import docker_client

    run = UpRun(ref, ref.model(), report, force, timeout)
    started = time.monotonic()
    run.client = docker_client()
    run.phases.append(("engine", time.monotonic() - started))
    for name, step in (_hosts_steps() if run.model.hosts else UP_STEPS):
        started = time.monotonic()
        step(run)
        run.phases.append((name, time.monotonic() - started))
    return run
