"""Docker Compose v2 (`docker compose`) or v1 (`docker-compose`), whichever is here."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from generator.runtime.errors import ComposeError


@functools.cache
def compose_command() -> tuple[str, ...]:
    """The first compose that answers `version`; v2 is preferred."""
    candidates = [("docker", "compose"), ("docker-compose",)]
    for cmd in candidates:
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return cmd
    raise ComposeError("neither `docker compose` (v2) nor `docker-compose` (v1) is installed")


def compose(compose_file: Path, project: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [*compose_command(), "-f", str(compose_file), "-p", project, *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ComposeError(f"{' '.join(cmd)} failed: " + (detail[-1] if detail else "no output"))
    return result
