"""The main process of a client container: a host outside the cluster.

It only makes sure that nothing for the pod or service ranges follows the
default route out of the lab (a real outside client has no route to them
either), then idles until stopped.
"""

from __future__ import annotations

import signal
import sys

from generator.node import proc
from generator.node.contract import CLUSTER_FILE, read_json


def main() -> None:
    cluster = read_json(CLUSTER_FILE)
    if not isinstance(cluster, dict):
        sys.exit(f"kgen client: cannot read {CLUSTER_FILE}")
    for cidr in (cluster["podCIDR"], cluster["serviceCIDR"]):
        proc.check(["ip", "route", "replace", "unreachable", cidr])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"client ready: unreachable {cluster['podCIDR']} {cluster['serviceCIDR']}", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
