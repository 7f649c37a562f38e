"""The incremental PortTracker gives what a computation from scratch gives."""

from __future__ import annotations

import random

from generator.node.proxy.service import PortTracker, port_infos
from tests.unit.proxy_fixture import PODS, SERVICES, pod, service


def test_tracker_matches_a_fresh_computation_through_many_changes() -> None:
    rng = random.Random(12)  # fixed seed: the same sequence every run
    services = [*SERVICES, service(7, "172.30.0.47", internal="Local")]
    pods = list(PODS)
    tracker = PortTracker()
    for step in range(300):
        action = rng.randrange(6)
        if action == 0 and pods:
            pods.pop(rng.randrange(len(pods)))
        elif action == 1:
            i = rng.randrange(1, 8)
            pods.append(pod(f"x{step}", f"10.180.{rng.randrange(4)}.{rng.randrange(250)}",
                            f"svc{i}", node=rng.choice(["test-node", "other-node"])))
        elif action == 2 and pods:
            k = rng.randrange(len(pods))
            pods[k] = {**pods[k], "state": rng.choice(["Running", "Pending"])}
        elif action == 3 and pods:
            k = rng.randrange(len(pods))
            # A new label, or a move to another namespace with the same labels.
            moved = {"namespace": f"ns{rng.randrange(1, 8)}"} if rng.random() < 0.5 \
                else {"labels": {"svc": f"svc{rng.randrange(1, 8)}"}}
            pods[k] = {**pods[k], **moved}
        elif action == 4:
            k = rng.randrange(len(services))
            services[k] = {**services[k], "selector": {"svc": f"svc{rng.randrange(1, 8)}"}}
        elif action == 5 and len(services) > 1:
            services.pop(rng.randrange(len(services)))
        assert tracker.update(list(services), list(pods)) == list(port_infos(services, pods)), step
