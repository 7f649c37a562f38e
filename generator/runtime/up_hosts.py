"""`kgen up`'s steps for a lab that spans hosts (lab contract section 11).

The lab is compiled and rendered once, exactly as on one engine (addresses,
subnets, cluster.json); only then is each member placed on its host's engine:

    engines  a client per host; the engines must be one swarm (checked, never joined)
    image    the node image on every engine: copied from one that has it (docker save |
             docker load), else built on the first host (its base copied in when the
             local engine has it)
    network  the attachable internal overlay network on a manager, the state volume
             on every engine
    create   each host's members from its compose file, files copied in, 8 at a time
    ready    as on one engine, the state documents read through the engines
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

from generator.cluster.names import project_name
from generator.runtime.errors import RuntimeFailure

if TYPE_CHECKING:
    from generator.runtime.up import UpRun

WORKERS = 8


def _hosts(run: UpRun) -> dict[str, Any]:
    engines: dict[str, Any] = run.engines  # type: ignore[attr-defined]
    return engines


def engines(run: UpRun) -> None:
    from generator.runtime.hostcli import record_engines
    from generator.runtime.swarm import check_swarm
    from generator.runtime.swarm import engines as connect

    cluster = run.lab()[1]
    run.engines = connect(cluster)  # type: ignore[attr-defined]
    record_engines([h["docker"] for h in cluster["hosts"]])  # where `kgen ls` and the rest look
    run.manager = check_swarm(cluster, _hosts(run))  # type: ignore[attr-defined]


def image(run: UpRun) -> None:
    from generator.render.node_image import base_tag, node_tag
    from generator.runtime.image import ensure_node_image
    from generator.runtime.swarm import cli, has_image, load_image

    cluster = run.lab()[1]
    tag = node_tag()
    docker_of = {h["name"]: h["docker"] for h in cluster["hosts"]}
    clients = _hosts(run)
    have = [h for h, c in clients.items() if has_image(c, tag)]
    if not have:
        first = cluster["hosts"][0]["name"]
        local = _local_has(tag)
        if local:
            run.report.say(f"loading {tag} into host {first}")
            load_image(tag, ["docker"], cli(docker_of[first]))
        else:
            if not has_image(clients[first], base_tag()) and _local_has(base_tag()):
                run.report.say(f"loading {base_tag()} into host {first}")
                load_image(base_tag(), ["docker"], cli(docker_of[first]))
            ensure_node_image(clients[first], run.report.say)
        have = [first]
    for host in clients:
        if host not in have:
            run.report.say(f"loading {tag} into host {host}")
            load_image(tag, cli(docker_of[have[0]]), cli(docker_of[host]))


def _local_has(tag: str) -> bool:
    """Does the local engine hold this image (only read from, never written to)?"""
    import subprocess

    try:
        return subprocess.run(["docker", "image", "inspect", tag], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def labels(run: UpRun) -> dict[str, str]:
    from generator.render.files import where_labels

    where = where_labels(run.model, run.lab()[0].root)
    found = {"kgen.lab": run.model.name, "kgen.dir": where["out_dir"]}
    if where["lab_file"]:
        found["kgen.file"] = where["lab_file"]
    return found


def network(run: UpRun) -> None:
    from generator.runtime.remote import ensure_volume
    from generator.runtime.swarm import ensure_overlay

    cluster = run.lab()[1]
    clients = _hosts(run)
    ensure_overlay(clients[run.manager], cluster, labels(run))  # type: ignore[attr-defined]
    for client in clients.values():
        ensure_volume(client, cluster["name"], labels(run))


def create(run: UpRun) -> None:
    import time

    from generator.render.files import host_compose_file
    from generator.runtime.create import container_specs, load
    from generator.runtime.remote import create_member

    paths, cluster = run.lab()
    clients = _hosts(run)
    jobs = []
    for host in cluster["hosts"]:
        compose = paths.root / host_compose_file(host["name"])
        jobs += [(clients[host["name"]], spec) for spec in
                 container_specs(load(compose), project_name(cluster["name"]), compose)]
    run.report.say(f"starting lab {cluster['name']} on {len(clients)} hosts "
                   f"({len(cluster['nodes'])} nodes, {len(cluster['pods'])} pods)")
    run.containers_started_at = time.monotonic()
    failed, done = [], 0
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {pool.submit(create_member, c, s): s for c, s in jobs}
        for future in as_completed(futures):
            try:
                future.result()
                done += 1
                run.report.progress(f"lab {cluster['name']}", [("containers", done, len(jobs))],
                                    f"last: {futures[future].name}")
            except Exception as err:  # one line per member, not a traceback
                failed.append(f"{futures[future].name}: {getattr(err, 'explanation', None) or err}")
    run.report.done()
    if failed:
        raise RuntimeFailure(f"creating container {failed[0]}")
    run.report.say(f"{done} containers started")


def stopped(run: UpRun) -> Any:
    """The lab's members that do not run, across the engines."""
    from generator.runtime.engine import lab_containers

    clients = list(_hosts(run).values())
    name = run.model.name
    return lambda: [c.name for client in clients for c in lab_containers(client, name)
                    if c.status != "running"]
