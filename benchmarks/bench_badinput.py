"""How long kgen takes to accept or refuse a large lab file (`nox -s bench -- badinput`),
and what a fuzzing run found (`nox -s fuzz` runs this with --log).

Issue 17's goal: no lab file under 1 MB takes more than 2 s to accept or refuse.
Each shape below is a lab file of about 1 MB built to stress one part of the
path (the YAML walk, the schema, the cluster checks, the error lines); the
table gives its size, its outcome, the error lines, and the best of 3 wall
times of `load_lab` (what every command runs before it creates anything) and
of one render that follows an accepted file, next to the goal and their ratio.
With --log FILE (the fuzzing run's log, tests/unit/test_lab_fuzz.py) it also
sums the run up and re-times its slowest accepted and refused files, and its
largest, the same way (times inside the run include a busy machine's stalls).
With --before REF (default `main`) each file is also timed, in the same run, by
that revision's loader (its `generator` package from `git archive`, in a child
process): the table then shows both CPU times and their ratio. Nothing here
asserts the goal.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from generator.cluster.build import build_state
from generator.cluster.network import choose_node_network
from generator.lab.errors import LabError
from generator.lab.model import load_lab
from generator.render.files import render

GOAL_SECONDS = 2.0
SIZE = 1_000_000
RUNS = 3


def _fill(head: str, line: Callable[[int], str]) -> str:
    """`head`, then numbered lines until the file is just under SIZE bytes."""
    parts, size, i = [head], len(head), 0
    while True:
        text = line(i)
        if size + len(text) >= SIZE:
            return "".join(parts)
        parts.append(text)
        size += len(text)
        i += 1


def shapes() -> dict[str, str]:
    lab = "name: big\nnodeNetwork: 10.128.0.0/9\npodCIDR: 10.0.0.0/10\nnodeCIDRMaskSize: 28\n"
    return {
        "nodes (valid)": _fill(lab + "nodes:\n", lambda i: f"  - n{i}\n"),
        "pods on one node (valid)": _fill(
            "name: big\npodCIDR: 10.0.0.0/8\nnodeCIDRMaskSize: 9\nserviceCIDR: 172.16.0.0/16\n"
            "nodes: [n]\npods:\n",
            lambda i: f"  - {{name: p{i}, node: n, labels: {{app: a{i % 7}}}}}\n"),
        "services (valid)": _fill(
            "name: big\nserviceCIDR: 10.96.0.0/12\nnodes: [n]\nservices:\n",
            lambda i: f"  - {{name: s{i}, ports: [{{port: 80}}]}}\n"),
        "NodePort services (refused: no room)": _fill(
            "name: big\nserviceCIDR: 10.96.0.0/12\nnodes: [n]\nservices:\n",
            lambda i: f"  - {{name: s{i}, type: NodePort, ports: [{{port: 80}}]}}\n"),
        "bad pod names (refused)": _fill(
            "name: big\nnodes: [n]\npods:\n", lambda i: f"  - {{name: P_{i}, node: nowhere}}\n"),
        "unknown keys (refused)": _fill("name: big\nnodes: [n]\n", lambda i: f"nodez{i}: 1\n"),
        # Near a known key: each one's "did you mean" needs difflib's full ratio.
        "near-miss keys (refused)": _fill("name: big\nnodes: [n]\n", lambda i: f"nodes{i}: 1\n"),
        "misspelt pod keys (refused)": _fill(
            "name: big\nnodes: [n]\npods:\n",
            lambda i: f"  - {{name: p{i}, node: n, lables{i}: x}}\n"),
        "duplicate keys (refused)": _fill("name: big\nnodes: [n]\nvxlan:\n",
                                          lambda i: "  vni: 1\n"),
        "labels (valid)": _fill("name: big\nnodes: [n]\npods:\n  - name: p\n    node: n\n"
                                "    labels:\n", lambda i: f"      k{i}: v{i}\n"),
        "anchored labels (refused: alias budget)": _fill(
            "name: big\nnodes: [n]\nx: &l {a: b, c: d, e: f, g: h, i: j, k: l, m: n, o: p}\n"
            "pods:\n", lambda i: f"  - {{name: p{i}, node: n, labels: *l}}\n"),
        "one long name (refused)": "name: " + "a" * (SIZE - 30) + "\nnodes: [n]\n",
        "deep flow lists (refused)": _fill("name: big\nnodes: [n]\n",
                                           lambda i: f"d{i}: {'[' * 40}{']' * 40}\n"),
    }


def best_of(run: Callable[[], object]) -> tuple[tuple[float, float], object]:
    """((wall s, CPU s) of the fastest of RUNS runs, its result). CPU time is shown too: on a
    shared machine other work stretches the wall time, much less the process's CPU time."""
    times, result = [], None
    for _ in range(RUNS):
        started, cpu = time.perf_counter(), time.process_time()
        result = run()
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    return min(times), result


# Run by the child process with the other revision's package first on its path.
_BEFORE = """
import sys, time
from generator.lab.errors import LabError
from generator.lab.model import load_lab
from pathlib import Path
best = None
for _ in range({runs}):
    cpu = time.process_time()
    try:
        load_lab(Path(sys.argv[1]))
    except LabError:
        pass
    spent = time.process_time() - cpu
    best = spent if best is None else min(best, spent)
print(best)
"""


def revision(ref: str, into: Path) -> Path:
    """The `generator` package of git revision `ref`, unpacked under `into`."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", ref, "generator"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def before_cpu(data: bytes, package: Path) -> float:
    """Best of RUNS CPU seconds of the other revision's load_lab on `data`."""
    with tempfile.TemporaryDirectory(prefix="kgen-bench-") as tmp:
        path = Path(tmp) / "lab.yaml"
        path.write_bytes(data)
        out = subprocess.run([sys.executable, "-c", _BEFORE.format(runs=RUNS), str(path)],
                             check=True, capture_output=True, text=True, cwd=package,
                             env={**os.environ, "PYTHONPATH": str(package)}).stdout
    return float(out)


def measure(data: bytes, with_render: bool = True
            ) -> tuple[str, int, tuple[float, float], float | None]:
    """(outcome, error lines, (wall, CPU) s to accept or refuse, wall s to render if accepted)."""
    with tempfile.TemporaryDirectory(prefix="kgen-bench-") as tmp:
        path = Path(tmp) / "lab.yaml"
        path.write_bytes(data)

        def accept() -> object:
            try:
                return load_lab(path)
            except LabError as err:
                return err

        seconds, result = best_of(accept)
        if isinstance(result, LabError):
            return "refused", len(result.problems), seconds, None
        if not with_render:
            return "accepted", 0, seconds, None
        lab = load_lab(path)
        started = time.perf_counter()  # once: writing 80,000 per-node files takes a while
        render(lab, build_state(lab, choose_node_network(lab, None, [])), Path(tmp) / "out")
        return "accepted", 0, seconds, time.perf_counter() - started


def table(rows: list[tuple[str, bytes]], before: Path | None = None,
          with_render: bool = True) -> None:
    """One line per file; `before`: the other revision's package, timed beside this one."""
    print(f"| {'lab file':38} | bytes | outcome | lines | CPU s before | CPU s now "
          "| now/before | wall s now | goal s | now/goal (CPU) | render wall s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, data in rows:
        old = before_cpu(data, before) if before is not None else None
        outcome, lines, (wall, cpu), rendered = measure(data, with_render)
        shown = f"{rendered:.2f}" if rendered is not None else "-"
        was = f"{old:.3f}" if old is not None else "-"
        ratio = f"{cpu / old:.2f}" if old else "-"
        print(f"| {name:38} | {len(data):,} | {outcome} | {lines:,} | {was} | {cpu:.3f} "
              f"| {ratio} | {wall:.3f} | {GOAL_SECONDS} | {cpu / GOAL_SECONDS:.2f} | {shown} |",
              flush=True)


def summarize(log: Path) -> None:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    kinds = collections.Counter(r["kind"] for r in records)
    total = sum(r["seconds"] for r in records)
    print(f"fuzzing log {log}: {len(records):,} lab files, {dict(kinds)}, "
          f"{total:.1f} s inside load/validate/build/render, "
          f"largest {max((r['bytes'] for r in records), default=0):,} bytes")
    print("\nThe 5 slowest files of the run (seconds inside the run: load, validate, build, "
          "render):\n")
    for r in sorted(records, key=lambda r: -r["seconds"])[:5]:
        print(f"- {r['seconds']:.3f} s, {r['kind']}, {r['bytes']:,} bytes, {r['lines']} error "
              f"lines: {r.get('shape', '(no shape logged)')}")
    rows = []
    for kind in ("rendered", "refused"):
        slowest = sorted((r for r in records if r["kind"] == kind and "input" in r),
                         key=lambda r: -r["seconds"])[:3]
        rows += [(f"fuzz: slowest {kind} #{i + 1} ({r['seconds']:.3f} s in the run)",
                  base64.b64decode(r["input"])) for i, r in enumerate(slowest)]
    largest = sorted((r for r in records if "input" in r), key=lambda r: -r["bytes"])[:3]
    rows += [(f"fuzz: largest #{i + 1} ({r['kind']}, {r['seconds']:.3f} s in the run)",
              base64.b64decode(r["input"])) for i, r in enumerate(largest)]
    print("\nIts slowest and largest files, timed again on their own:\n")
    table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="a fuzzing log to sum up")
    parser.add_argument("--no-shapes", action="store_true", help="only sum up the log")
    parser.add_argument("--before", default="main",
                        help="git revision whose loader is timed beside this one ('' for none)")
    parser.add_argument("--no-render", action="store_true", help="skip rendering accepted files")
    args = parser.parse_args()
    if not args.no_shapes:
        print(f"Lab files of about {SIZE:,} bytes, best of {RUNS} runs (CPU s: the process's "
              f"own time; before: revision {args.before or '-'}):\n")
        with tempfile.TemporaryDirectory(prefix="kgen-before-") as tmp:
            package = revision(args.before, Path(tmp)) if args.before else None
            table([(name, text.encode()) for name, text in shapes().items()], package,
                  not args.no_render)
    if args.log:
        print()
        summarize(args.log)


if __name__ == "__main__":
    main()
