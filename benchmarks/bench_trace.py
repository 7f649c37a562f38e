"""`kgen trace` benchmark (`nox -s bench -- trace`): how long one trace takes.

On a copy of the demo lab (3 nodes), N times each, end to end through the
command line as a user runs it:
- `kgen trace pod-0 web` (arm on 3 nodes, one request, disarm, join, print);
- the same request without tracing, `kgen exec pod-0 -- python3 -m
  generator.node.probe http 10.96.0.11 80 /hostname`, as the comparison: what
  the trace costs on top of asking once through the same CLI and Docker.

The median of each and their ratio are printed from the same run; nothing
here asserts a time. `--lab FILE` measures an already running lab instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from tests.conftest import ROOT


def kgen(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kgen", *args], cwd=workdir, check=True, capture_output=True, text=True)


def timed(workdir: Path, *args: str) -> float:
    started = time.monotonic()
    kgen(workdir, *args)
    return time.monotonic() - started


def measure(workdir: Path, lab: Path, runs: int) -> dict[str, list[float]]:
    trace, plain, verdicts = [], [], []
    for _ in range(runs):
        started = time.monotonic()
        doc = json.loads(kgen(workdir, "trace", "-l", str(lab), "pod-0", "web", "--json").stdout)
        trace.append(time.monotonic() - started)
        verdicts.append(doc["verdict"])
        plain.append(timed(workdir, "exec", "-l", str(lab), "pod-0", "--", "python3", "-m",
                           "generator.node.probe", "http", "10.96.0.11", "80", "/hostname"))
    return {"trace_s": trace, "plain_s": plain, "verdicts": verdicts}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--lab", type=Path, help="a running lab file to measure (default: a copy "
                                                 "of the demo, brought up and down here)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kgen-bench-trace-") as tmp:
        workdir = Path(tmp)
        lab = args.lab.resolve() if args.lab else workdir / "trbench.yaml"
        if not args.lab:
            doc = yaml.safe_load((ROOT / "labs" / "demo.yaml").read_text())
            doc["name"] = "trbench"
            lab.write_text(yaml.safe_dump(doc, sort_keys=False))
            kgen(workdir, "up", "-l", str(lab))
        try:
            result = measure(workdir if not args.lab else lab.parent, lab, args.runs)
        finally:
            if not args.lab:
                kgen(workdir, "down", "-l", str(lab))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    trace, plain = result["trace_s"], result["plain_s"]
    ratio = statistics.median(trace) / statistics.median(plain)
    print(f"{'runs':>5} {'trace median s':>15} {'min s':>7} {'max s':>7} {'plain request median s':>23} "
          f"{'ratio':>6}")
    print(f"{len(trace):>5} {statistics.median(trace):>15.2f} {min(trace):>7.2f} {max(trace):>7.2f} "
          f"{statistics.median(plain):>23.2f} {ratio:>6.1f}")
    print(f"verdicts: {', '.join(sorted(set(result['verdicts'])))}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
