"""Probe checks' requests, batched per container and run in parallel in the background.

Every probe that starts in one container (a node, for its pods; a client)
goes into one `docker exec` running `python3 -m generator.node.probe batch`,
which sends them from inside each pod's network namespace, several at once,
and reports one `ProbeSummary` per job. At most `parallel` of those
`docker exec`s run at once, the longest first. `ProbeRun` starts them all when
the first check's test asks, and each probe check's test waits for its own.

Requests go to lab addresses only (the node-side probe refuses anything that
is not private or loopback) and are bounded in count (the plan's numbers) and
time (per request, and the run's deadline).
"""

from __future__ import annotations

import json
import shlex
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from generator.checks.base import LabView, Outcome, ProbeCheck
from generator.node.documents import ProbeJob, ProbeSummary, encode_probe_jobs, failed_summary

PROBE = "python3 -m generator.node.probe"
# Per request that must succeed. Lab round trips take a millisecond, but on a busy host a
# lost SYN comes back after 1 s and 3 s (TCP's retransmissions): 10 s covers 1+2+4 s.
# Only a failing check ever waits this long (it stops at its first failure).
TIMEOUT = 10.0
DROP_TIMEOUT = 2.0  # a request that must be dropped: how long to wait before calling it dropped
BATCH_JOBS = 128  # probes per `docker exec` (each costs ~0.1 s of CPU in its container)
BATCH_WORKERS = 16  # probes a batch runs at once
STREAMS = 4  # requests of one probe in flight at once (each a new connection, a new draw)
PARALLEL = 6  # `docker exec`s at once
DEFAULT_DEADLINE = 300.0
GRACE = 10.0  # beyond the deadline, for a `docker exec` that hangs past its own timeout


def job(lab: LabView, source: str, mode: str, target: str, arg: str = "", count: int = 1,
        timeout: float = TIMEOUT, until: list[str] | set[str] | None = None,
        streams: int = STREAMS) -> ProbeJob:
    """Up to `count` requests from `source` to `target` ("ip:port"), `streams` at once."""
    ip, port = target.rsplit(":", 1)
    return {"netns": lab.netns_of(source), "mode": mode, "host": ip, "port": int(port),
            "arg": arg, "count": count, "timeout": timeout,
            "until": sorted(until) if until is not None else None, "fail_fast": True,
            "streams": min(streams, count)}


# ---- reading summaries


def all_ok(s: ProbeSummary) -> bool:
    return s["sent"] > 0 and s["ok"] == s["sent"] and not s["errors"]


def answers(s: ProbeSummary) -> set[str]:
    return set(s["answers"])


def peer_ips(s: ProbeSummary) -> set[str]:
    """The peer addresses /clientip answers reported (ip:port -> ip)."""
    return {a.rsplit(":", 1)[0] for a in s["answers"]}


def describe(s: ProbeSummary) -> str:
    text = ", ".join(f"{a}×{n}" for a, n in sorted(s["answers"].items()))
    if s["errors"]:
        errors = "; ".join(sorted(s["errors"]))
        text += (" " if text else "") + f"errors: {errors}"
    return text or "nothing"


def drop_job(lab: LabView, source: str, target: str) -> ProbeJob:
    """A request that must die unanswered (no local endpoint): it times out."""
    return job(lab, source, "http", target, "/clientip", timeout=DROP_TIMEOUT)


def judge_dropped(s: ProbeSummary) -> Outcome:
    return Outcome(s["ok"] == 0 and "timed out" in s["errors"], describe(s))


# ---- running them


def workers(jobs: list[ProbeJob]) -> int:
    """Probes a batch runs at once: BATCH_WORKERS, plus one for each probe that must be
    dropped: those only wait out DROP_TIMEOUT on an idle socket (a NetworkPolicy row has
    many), so waiting for them side by side costs nothing but keeps the run short."""
    waits = sum(1 for j in jobs if j["timeout"] < TIMEOUT)
    return min(len(jobs), BATCH_WORKERS + waits)


def run_batch(lab: LabView, member: str, jobs: list[ProbeJob],
              deadline: float) -> list[ProbeSummary]:
    """Jobs in one container; one summary per job (an error summary if the batch broke)."""
    seconds = max(0.5, round(deadline - time.monotonic(), 1))
    # The node-side deadline ends the loops; coreutils timeout ends the process regardless.
    cmd = (f"timeout -k 2 {seconds + 5:.1f} {PROBE} batch {encode_probe_jobs(jobs)} "
           f"--deadline {seconds} --workers {workers(jobs)}")
    result = lab.host(member).run(cmd)
    try:
        summaries = json.loads(result.stdout)
        if isinstance(summaries, list) and len(summaries) == len(jobs):
            return summaries
    except ValueError:
        pass
    error = (result.stderr or result.stdout or f"exit {result.rc}").strip()[:200]
    return [failed_summary(error) for _ in jobs]


def _cost(jobs: list[ProbeJob]) -> float:
    """A rough time estimate, in requests, to start the longest batches first."""
    return sum(j["count"] / j["streams"] + (100 if j["timeout"] < TIMEOUT else 10) for j in jobs)


Result = list[ProbeSummary] | Outcome  # a check's summaries, or why it has none


class ProbeRun:
    """The jobs of every selected probe check, batched per container, run in the background."""

    def __init__(self, lab: LabView, checks: list[ProbeCheck], parallel: int,
                 deadline: float, timeout: float) -> None:
        self.lab = lab
        self.deadline = deadline
        self.timeout = timeout
        self.results: dict[str, Future[Result]] = {c.id: Future() for c in checks}
        self.batches = self._batches(checks)
        self.pool = ThreadPoolExecutor(max_workers=max(1, parallel),
                                       thread_name_prefix="kgen-check")

    def _batches(self, checks: list[ProbeCheck]) -> list[tuple[str, list[tuple[str, list[ProbeJob]]]]]:
        """(member, [(check id, its jobs)]) per batch, BATCH_JOBS jobs at most, longest first."""
        by_member: dict[str, list[tuple[str, list[ProbeJob]]]] = {}
        for check in checks:
            try:
                jobs = check.jobs(self.lab)
            except Exception as err:  # a check that cannot be planned here has failed
                self.results[check.id].set_result(failed(err))
                continue
            by_member.setdefault(self.lab.container_of(check.source), []).append((check.id, jobs))
        batches = []
        for member, items in by_member.items():
            chunk: list[tuple[str, list[ProbeJob]]] = []
            for item in items:
                if chunk and sum(len(j) for _, j in chunk) + len(item[1]) > BATCH_JOBS:
                    batches.append((member, chunk))
                    chunk = []
                chunk.append(item)
            batches.append((member, chunk))
        # Longest first, so that the last to start are short (the run ends with the longest).
        batches.sort(key=lambda b: -_cost([j for _, jobs in b[1] for j in jobs]))
        return batches

    def start(self) -> None:
        for member, items in self.batches:
            self.pool.submit(self._run, member, items)

    def _run(self, member: str, items: list[tuple[str, list[ProbeJob]]]) -> None:
        if time.monotonic() >= self.deadline:
            for check_id, _ in items:
                self.results[check_id].set_result(not_run(self.timeout))
            return
        try:
            summaries = run_batch(self.lab, member, [j for _, jobs in items for j in jobs],
                                  self.deadline)
        except Exception as err:
            for check_id, _ in items:
                self.results[check_id].set_result(failed(err))
            return
        at = 0
        for check_id, jobs in items:
            self.results[check_id].set_result(summaries[at:at + len(jobs)])
            at += len(jobs)

    def result(self, check: ProbeCheck) -> Result:
        """The check's summaries once its batch is done; an Outcome if it never will be."""
        try:
            return self.results[check.id].result(
                timeout=max(0.0, self.deadline + GRACE - time.monotonic()))
        except FutureTimeout:
            return Outcome(False, f"not finished: the {self.timeout:.0f} s timeout was reached")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def not_run(timeout: float) -> Outcome:
    return Outcome(False, f"not run: the {timeout:.0f} s timeout was reached")


def failed(err: BaseException) -> Outcome:
    """A check that cannot run has failed, with the reason shown."""
    return Outcome(False, f"{type(err).__name__}: {err}"[:200])


def probe_once(lab: LabView, source: str, target: str, path: str) -> list[dict[str, Any]]:
    """One HTTP request from `source` (its own `docker exec`): the attempts as the probe
    reports them (`ProbeAttempt`), or one failed attempt saying why there are none."""
    ip, port = target.rsplit(":", 1)
    # Every check needs all its requests to succeed: stop at the first failure.
    result = lab.host(source).run(f"{PROBE} http {ip} {port} {shlex.quote(path)} --count 1 "
                                  f"--timeout {TIMEOUT} --fail-fast --json")
    try:
        return list(json.loads(result.stdout))
    except ValueError:
        return [{"ok": False, "answer": None,
                 "error": (result.stderr or result.stdout).strip()[:200], "ms": 0}]
