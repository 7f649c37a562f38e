"""`kgen check`: the lab's checks as a pytest session, one test per check.

`execute` runs pytest on `test_datapath.py`, whose test functions are named
after the check kinds; `ChecksPlugin` parametrises each with the plan's
checks of its kind (the parameter id names the check, so a test is e.g.
`clusterip[web:80 from pod-0]`), and pytest applies `-k` and writes
`--junitxml` as it does for any suite. The lab comes from the `kgen_lab`
fixture of kgen's pytest plugin (`generator.pytest_plugin`), the one users'
tests get. The first test to run starts every check in the background (the
`kgen_checks` session fixture): the checks with commands of their own on
testinfra hosts, and the probe batches, in parallel as `--parallel` allows.
Each test waits for its own check, judges a probe check's summaries, and
asserts its outcome.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import pytest

from generator.checks.base import Check, CommandCheck, LabView, Outcome, ProbeCheck
from generator.checks.batch import (
    DEFAULT_DEADLINE,
    GRACE,
    PARALLEL,
    ProbeRun,
    failed,
    not_run,
)
from generator.checks.lab import KgenLab
from generator.checks.plan import plan
from generator.node.contract import Cluster
from generator.node.documents import StatusReport

TEST_MODULE = Path(__file__).with_name("test_datapath.py")
Progress = Callable[[int], Callable[[Check, Outcome], None]]


class SelectionError(ValueError):
    """-k matched no check, or is not a valid expression."""


class CheckRun:
    """One session's checks, run in the background from the first test on; each test then
    takes its own check's outcome.

    The checks with commands of their own go first (a capture takes longest), then the
    probe batches: at most `parallel` `docker exec`s at a time in all.
    """

    def __init__(self, lab: LabView, checks: list[Check], parallel: int, deadline: float,
                 timeout: float) -> None:
        self.lab = lab
        self.deadline = deadline
        self.timeout = timeout
        self.outcomes: dict[str, Outcome] = {}
        self.probes = ProbeRun(lab, [c for c in checks if isinstance(c, ProbeCheck)], parallel,
                               deadline, timeout)
        self.commanded = [c for c in checks if isinstance(c, CommandCheck)]
        self.commands: dict[str, Future[Outcome]] = {}

    def start(self) -> None:
        for check in self.commanded:
            self.commands[check.id] = self.probes.pool.submit(self._command, check)
        self.probes.start()

    def _command(self, check: CommandCheck) -> Outcome:
        if time.monotonic() >= self.deadline:
            return not_run(self.timeout)
        try:
            return check.run(self.lab)
        except Exception as err:
            return failed(err)

    def outcome(self, check: Check) -> Outcome:
        """The check's outcome: its probe summaries judged, or its commands' verdict."""
        outcome = self._outcome(check)
        self.outcomes[check.id] = outcome
        return outcome

    def _outcome(self, check: Check) -> Outcome:
        if isinstance(check, ProbeCheck):
            result = self.probes.result(check)
            if isinstance(result, Outcome):
                return result
            try:
                return check.judge(self.lab, result)
            except Exception as err:
                return failed(err)
        if check.id not in self.commands:
            return Outcome(False, f"no way to run a {check.kind} check")
        try:
            return self.commands[check.id].result(
                timeout=max(0.0, self.deadline + GRACE - time.monotonic()))
        except FutureTimeout:
            return Outcome(False, f"not finished: the {self.timeout:.0f} s timeout was reached")


class ChecksPlugin:
    """Feeds the checks to test_datapath.py and keeps what each test saw."""

    def __init__(self, checks: list[Check], lab: KgenLab, status: StatusReport, parallel: int,
                 timeout: float, progress: Progress | None) -> None:
        self.checks = checks
        self.lab = lab
        self.status = status
        self.parallel = parallel
        self.timeout = timeout
        self.progress = progress
        self.done: Callable[[Check, Outcome], None] | None = None
        self.selected: list[Check] = []
        self.by_nodeid: dict[str, Check] = {}
        self.run: CheckRun | None = None
        self.broken: dict[str, Outcome] = {}  # tests that broke before their check ran

    def pytest_configure(self, config: pytest.Config) -> None:
        from generator.pytest_plugin import RUNNING_LAB

        config.stash[RUNNING_LAB] = self.lab  # kgen_lab is this lab: no `kgen up`, no down

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "check" in metafunc.fixturenames:
            mine = [c for c in self.checks if c.test_name() == metafunc.function.__name__]
            metafunc.parametrize("check", mine, ids=[c.label for c in mine])

    @pytest.hookimpl(trylast=True)  # after -k has deselected
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        kept: list[tuple[pytest.Item, Check]] = []
        empty: list[pytest.Item] = []
        for item in items:
            callspec = getattr(item, "callspec", None)
            check = callspec.params.get("check") if callspec is not None else None
            if isinstance(check, Check):
                kept.append((item, check))
            else:  # a kind the plan has no check of: pytest's "empty parameter set" item
                empty.append(item)
        if empty:
            config.hook.pytest_deselected(items=empty)
        items[:] = [item for item, _ in kept]
        self.by_nodeid = {item.nodeid: check for item, check in kept}
        chosen = {check.id for _, check in kept}
        self.selected = [c for c in self.checks if c.id in chosen]
        if self.progress and self.selected:
            self.done = self.progress(len(self.selected))

    @pytest.fixture(scope="session")
    def kgen_checks(self, kgen_lab: KgenLab) -> Iterator[CheckRun]:
        view = LabView(kgen_lab.cluster, self.status, kgen_lab.host)
        # The run's time starts with the checks, once pytest has collected them (at a
        # thousand checks and more, collecting them takes a while on a busy machine).
        deadline = time.monotonic() + self.timeout
        self.run = CheckRun(view, self.selected, self.parallel, deadline, self.timeout)
        self.run.start()
        try:
            yield self.run
        finally:
            self.run.probes.close()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        check = self.by_nodeid.get(report.nodeid)
        if check is None or not (report.when == "call" or report.failed):
            return
        outcome = self.run.outcomes.get(check.id) if self.run else None
        if outcome is None:  # it broke before its outcome was known (e.g. in setup)
            outcome = self.broken.setdefault(check.id, Outcome(False, _reason(report)))
        if self.done is not None and report.when != "teardown":
            self.done(check, outcome)

    def outcome_of(self, check: Check) -> Outcome:
        outcome = self.run.outcomes.get(check.id) if self.run else None
        return outcome or self.broken.get(check.id, Outcome(False, "did not run"))


def _reason(report: pytest.TestReport) -> str:
    """What broke, in one line: the exception's own message (`Error: text`)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = (crash.message if crash is not None else str(report.longrepr or "")).strip()
    return (text.splitlines()[0] if text else "failed")[:200]


def pytest_args(keyword: str | None, junitxml: Path | None) -> list[str]:
    """Our own ini (none) and rootdir, so a project's pytest config does not leak in; the
    test functions are the kinds' names; no capture, so a progress display reaches the
    terminal (pytest's own report goes to a buffer: kgen prints its own table). No
    tracebacks in that report: pytest pairs every failure with every test's teardown
    there, which took minutes for a 250-node lab's 33,000 checks."""
    from generator.checks.kinds import KINDS

    args = [str(TEST_MODULE), "-q", "-s", "--tb=no", "-p", "no:cacheprovider", "-c", os.devnull,
            "--rootdir", str(TEST_MODULE.parent), "-p", "generator.pytest_plugin",
            "-o", "python_functions=" + " ".join(k.test_name() for k in KINDS),
            "-o", "junit_suite_name=kgen-check", "-o", "console_output_style=classic"]
    if keyword:
        args += ["-k", keyword]
    if junitxml is not None:
        args += ["--junitxml", str(junitxml)]
    return args


def execute(cluster: Cluster, status: StatusReport, checks: list[Check] | None = None,
            keyword: str | None = None, parallel: int = PARALLEL,
            timeout: float = DEFAULT_DEADLINE, progress: Progress | None = None,
            junitxml: Path | None = None, lab: KgenLab | None = None) -> list[dict[str, Any]]:
    """Run checks (default: the lab's plan; `keyword` selects as pytest -k does);
    one result row per check run, in plan order."""
    checks = plan(cluster, status) if checks is None else checks
    lab = lab or KgenLab(cluster, lambda: status)
    plugin = ChecksPlugin(checks, lab, status, parallel, timeout, progress)
    report = io.StringIO()
    # Only kgen's plugin: a user's installed pytest plugins have no say in kgen check.
    with _env("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1"), contextlib.redirect_stdout(report), \
            contextlib.redirect_stderr(report):
        code = pytest.main(pytest_args(keyword, junitxml), plugins=[plugin])
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR):
        lines = [line.removeprefix("ERROR: ") for line in report.getvalue().splitlines()
                 if line.startswith("ERROR")]
        raise SelectionError("; ".join(lines[-2:]) or f"-k {keyword!r}: pytest exit {code}")
    if not plugin.selected:
        raise SelectionError(f"no check matches -k {keyword!r}" if keyword else "no checks planned")
    return [row(c, plugin.outcome_of(c)) for c in plugin.selected]


def row(check: Check, outcome: Outcome) -> dict[str, Any]:
    return {"id": check.id, "kind": check.kind, "what": check.what, "from": check.source,
            "to": check.target, "expected": check.expected, "seen": outcome.seen,
            "passed": outcome.passed, **outcome.extra}


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
