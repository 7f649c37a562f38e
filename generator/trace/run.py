"""Run one trace: a helper in every node (and in a client source), all at once.

Each helper is `docker exec -i <container> python3 -m generator.node.trace`,
started in its own session so that a Ctrl-C meant for kgen does not reach it:
kgen then tells every helper to stop, and each removes its rules before it
answers. If kgen itself dies, the helpers see the end of their input and
clean up just the same; one killed outright is swept by the next trace on
that node once its deadline has passed.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import cast

from generator.node.documents import TracePlan, TraceProbeResult, TraceReport
from generator.trace.plan import PROBE_TIMEOUT

ARM_TIMEOUT = 15.0
REPORT_TIMEOUT = 15.0
HELPER = ["python3", "-m", "generator.node.trace"]


class TraceFailure(RuntimeError):
    """The trace could not run (exit status 1)."""


class Helper:
    def __init__(self, container: str, plan: TracePlan, docker: list[str] | None = None) -> None:
        self.container = container
        self.member = plan["member"]
        self.events: queue.Queue[dict[str, object] | None] = queue.Queue()
        self.proc = subprocess.Popen([*(docker or ["docker"]), "exec", "-i", container, *HELPER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()
        self.send(json.dumps(plan))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.put(event)
        self.events.put(None)

    def send(self, line: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def expect(self, kind: str, timeout: float) -> dict[str, object]:
        """The helper's next event of `kind` (a JSON object); TraceFailure when it gives up."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TraceFailure(f"{self.member}: no {kind} from the trace helper in {timeout:.0f}s")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event is None:
                raise TraceFailure(f"{self.member}: the trace helper ended: {self.why()}")
            if event.get("event") == kind:
                return event
            if event.get("event") == "report":  # it gave up early: say why
                raise TraceFailure(f"{self.member}: {event.get('error') or 'trace helper failed'}")

    def why(self) -> str:
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            return "still running"
        assert self.proc.stderr is not None
        text = self.proc.stderr.read().strip()
        if "No such container" in text or "is not running" in text:
            return f"container {self.container} is not running (is the lab up?)"
        return text.splitlines()[-1] if text else f"exit status {self.proc.returncode}"

    def close(self) -> None:
        """End of input: the helper disarms and exits; then make sure it has."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def execute(plans: dict[str, TracePlan], source: str,
            docker: Callable[[str], list[str]] | None = None
            ) -> tuple[TraceProbeResult, dict[str, TraceReport]]:
    """Arm everywhere, send the probe from `source` (a container), stop, collect.

    Returns (the probe's result, {member: report}).
    """
    helpers: list[Helper] = []
    try:
        for container, plan in plans.items():
            helpers.append(Helper(container, plan, docker(container) if docker else None))
        for h in helpers:
            h.expect("armed", ARM_TIMEOUT)
        src = next(h for h in helpers if h.container == source)
        src.send("go")
        # The helpers' lines are generator.node.trace's documents, typed in the contract.
        probe = cast(TraceProbeResult, src.expect("probe", PROBE_TIMEOUT + 10)["result"])
        for h in helpers:
            h.send("stop")
        reports = {h.member: cast(TraceReport, h.expect("report", REPORT_TIMEOUT))
                   for h in helpers}
        return probe, reports
    finally:
        for h in helpers:
            h.send("stop")
        for h in helpers:
            h.close()
