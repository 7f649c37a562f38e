"""kgen's pytest plugin (entry point `pytest11`): test your own ideas against a lab.

`pytest --kgen-lab FILE` brings the lab up once for the session, or uses it
when it already runs from that file, and takes it down at the end unless
`--kgen-keep` (lab contract §10). Fixtures:

- `kgen_lab` (session): the lab, `generator.checks.lab.KgenLab`: `.name`,
  `.status()` (what `kgen status --json` prints) and `.host(NAME)`, a
  testinfra Host for a node, a client or a pod (a pod's commands run in its
  network namespace);
- `kgen_host` (function): `kgen_host("pod-0")` is `kgen_lab.host("pod-0")`.

Without `--kgen-lab` the plugin does nothing: no lab is touched, and a test
that asks for `kgen_lab` fails saying it needs the option. `kgen check` hands
the plugin the lab it already found (RUNNING_LAB), so its checks get the same
fixtures.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testinfra.host import Host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from generator.checks.lab import KgenLab

RUNNING_LAB = pytest.StashKey["KgenLab"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kgen", "kgen labs (a Kubernetes networking lab in Docker)")
    group.addoption("--kgen-lab", metavar="FILE", default=None,
                    help="the lab file (or a running lab's name) the kgen_lab fixture brings up "
                         "once for the session, or uses when it already runs from that file")
    group.addoption("--kgen-keep", action="store_true", default=False,
                    help="leave the lab running after the session")


def _kgen(*args: str) -> subprocess.CompletedProcess[str]:
    """The kgen command line of this interpreter's kgen (what a user would type)."""
    return subprocess.run([sys.executable, "-m", "generator", *args], capture_output=True,
                          text=True)


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


class LabSession:
    """The lab of `--kgen-lab` for one pytest session: up at the start, down at the end."""

    def __init__(self, lab: str, keep: bool) -> None:
        self.lab = lab
        self.keep = keep

    def start(self) -> KgenLab:
        from generator.checks.lab import KgenLab
        from generator.lab.errors import LabError
        from generator.runtime.errors import RuntimeFailure
        from generator.runtime.locate import find_lab

        try:
            ref = find_lab(self.lab)
            running_here = ref.is_up and ref.running is not None and (
                not ref.given_file or ref.same_file(ref.running))
        except LabError as err:
            pytest.fail(f"--kgen-lab {self.lab}: {err}", pytrace=False)
        if not running_here:
            result = _kgen("up", "-l", self.lab)
            if result.returncode != 0:
                pytest.fail(f"--kgen-lab {self.lab}: kgen up failed: {_last_line(result)}",
                            pytrace=False)
            ref = find_lab(self.lab)
        try:
            return KgenLab.running(ref)
        except RuntimeFailure as err:
            pytest.fail(f"--kgen-lab {self.lab}: {err}", pytrace=False)

    def stop(self) -> None:
        if self.keep:
            return
        result = _kgen("down", "-l", self.lab)
        if result.returncode != 0:
            sys.stderr.write(f"kgen: --kgen-lab {self.lab}: kgen down failed: "
                             f"{_last_line(result)}\n")


@pytest.fixture(scope="session")
def kgen_lab(request: pytest.FixtureRequest) -> Iterator[KgenLab]:
    """The lab under test (see the module's docstring)."""
    given = request.config.stash.get(RUNNING_LAB, None)
    if given is not None:
        yield given
        return
    lab = request.config.getoption("kgen_lab")
    if not lab:
        pytest.fail("the kgen_lab fixture needs a lab: run pytest with --kgen-lab FILE",
                    pytrace=False)
    session = LabSession(str(Path(lab)) if Path(lab).is_file() else lab,
                         bool(request.config.getoption("kgen_keep")))
    started = session.start()
    try:
        yield started
    finally:
        session.stop()


@pytest.fixture
def kgen_host(kgen_lab: KgenLab) -> Callable[[str], Host]:
    """`kgen_host("pod-0")`: a testinfra Host for a node, client or pod of the lab."""
    return kgen_lab.host
