"""How long kgen takes to accept or refuse a large lab file (`nox -s bench -- badinput`),
and what a fuzzing run found (`nox -s fuzz` runs this with --log).

Issue 17's goal: no lab file under 1 MB takes more than 2 s to accept or refuse.
Each shape below is a lab file of about 1 MB built to stress one part of the
path (the YAML walk, the schema, the cluster checks, the error lines); the
table gives its size, its outcome, the error lines, and the best of 3 wall
times of `load_lab` (what every command runs before it creates anything) and
of the render that follows an accepted file, next to the goal and their ratio.
With --log FILE (the fuzzing run's log, tests/unit/test_lab_fuzz.py) it also
sums the run up and re-times its slowest accepted and refused files the same way.
Nothing here asserts the goal.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
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
        "duplicate keys (refused)": _fill("name: big\nnodes: [n]\nvxlan:\n",
                                          lambda i: "  vni: 1\n"),
        "labels (valid)": _fill("name: big\nnodes: [n]\npods:\n  - name: p\n    node: n\n"
                                "    labels:\n", lambda i: f"      k{i}: v{i}\n"),
        "anchored labels (valid)": _fill(
            "name: big\nnodes: [n]\nx: &l {a: b, c: d, e: f, g: h, i: j, k: l, m: n, o: p}\n"
            "pods:\n", lambda i: f"  - {{name: p{i}, node: n, labels: *l}}\n"),
        "one long name (refused)": "name: " + "a" * (SIZE - 30) + "\nnodes: [n]\n",
        "deep flow lists (refused)": _fill("name: big\nnodes: [n]\n",
                                           lambda i: f"d{i}: {'[' * 40}{']' * 40}\n"),
    }


def best_of(run: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(RUNS):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def measure(data: bytes) -> tuple[str, int, float, float | None]:
    """(outcome, error lines, seconds to accept or refuse, seconds to render if accepted)."""
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
        lab = load_lab(path)
        rendered, _ = best_of(lambda: render(lab, build_state(lab, choose_node_network(
            lab, None, [])), Path(tmp) / "out"))
        return "accepted", 0, seconds, rendered


def table(rows: list[tuple[str, bytes]]) -> None:
    print(f"| {'lab file':38} | bytes | outcome | lines | accept/refuse s | goal s | ratio "
          "| render s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name, data in rows:
        outcome, lines, seconds, rendered = measure(data)
        shown = f"{rendered:.2f}" if rendered is not None else "-"
        print(f"| {name:38} | {len(data):,} | {outcome} | {lines:,} | {seconds:.3f} "
              f"| {GOAL_SECONDS} | {seconds / GOAL_SECONDS:.2f} | {shown} |")


def summarize(log: Path) -> None:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    kinds = collections.Counter(r["kind"] for r in records)
    total = sum(r["seconds"] for r in records)
    print(f"fuzzing log {log}: {len(records):,} lab files, {dict(kinds)}, "
          f"{total:.1f} s inside load/validate/build/render, "
          f"largest {max((r['bytes'] for r in records), default=0):,} bytes")
    rows = []
    for kind in ("rendered", "refused"):
        slowest = sorted((r for r in records if r["kind"] == kind and "input" in r),
                         key=lambda r: -r["seconds"])[:3]
        rows += [(f"fuzz: slowest {kind} #{i + 1} ({r['seconds']:.3f} s in the run)",
                  base64.b64decode(r["input"])) for i, r in enumerate(slowest)]
    print("\nIts slowest files, timed again on their own:\n")
    table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="a fuzzing log to sum up")
    parser.add_argument("--no-shapes", action="store_true", help="only sum up the log")
    args = parser.parse_args()
    if not args.no_shapes:
        print(f"Lab files of about {SIZE:,} bytes, best of {RUNS} runs:\n")
        table([(name, text.encode()) for name, text in shapes().items()])
    if args.log:
        print()
        summarize(args.log)


if __name__ == "__main__":
    main()
