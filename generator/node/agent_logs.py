"""Where a node agent's log lines go: stdout (`docker logs`) and /var/log/kgen/agent.log,
and kube-proxy's own also to proxy.log (`kgen logs --export` gives each per node; its
lines stay in agent.log too, in order with what the agent did)."""

from __future__ import annotations

import logging
from pathlib import Path

LOG_DIR = Path("/var/log/kgen")
FORMAT = "%(asctime)s %(name)s %(message)s"


def setup() -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format=FORMAT,
                        handlers=[logging.StreamHandler(),
                                  logging.FileHandler(LOG_DIR / "agent.log")])
    proxy_log = logging.FileHandler(LOG_DIR / "proxy.log")
    proxy_log.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger("kgen.proxy").addHandler(proxy_log)
