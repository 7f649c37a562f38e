"""Property: any lab file ends in a rendered lab or in kgen's error lines, never in
another exception or a hang, and every error line is one printable line.

The normal test run draws a small, fixed set of files (derandomized: the same
ones every run). `nox -s fuzz` draws 10,000 fresh ones (KGEN_FUZZ_EXAMPLES)
and logs each run's outcome and time to KGEN_FUZZ_LOG, which
`tests/unit/fuzz_report.py` sums up.
"""

from __future__ import annotations

import base64
import json
import os
import re

from hypothesis import HealthCheck, Phase, given, settings

from generator.lab.errors import LINE_MAX
from tests.unit.lab_fuzz import lab_files, render_outcome

EXAMPLES = int(os.environ.get("KGEN_FUZZ_EXAMPLES", "120"))
LOG = os.environ.get("KGEN_FUZZ_LOG")
# KGEN_FUZZ_SHRINK=0 reports failing files as drawn, without minimizing them (much faster).
PHASES = [p for p in Phase if os.environ.get("KGEN_FUZZ_SHRINK", "1") != "0" or p != Phase.shrink]
# Inputs kept in the log for the report: anything slower or larger than this.
KEEP_INPUT_SECONDS = 0.1
KEEP_INPUT_BYTES = 100_000


@settings(max_examples=EXAMPLES, derandomize=EXAMPLES <= 1000, database=None, deadline=None,
          phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much, HealthCheck.large_base_example])
@given(lab_files())
def test_any_lab_file_is_rendered_or_refused_in_one_line_per_error(data: bytes) -> None:
    outcome = render_outcome(data)
    if LOG:
        _log(data, outcome.kind, outcome.seconds, len(outcome.lines))
    if outcome.kind != "refused":
        return
    assert outcome.lines, "a LabError without a problem"
    shape = re.compile(r"[^:]*lab\.yaml: .+")
    for line in outcome.lines:
        assert shape.fullmatch(line), f"not `file: path: problem`: {line!r}"
        assert line.isprintable(), f"unprintable characters: {line!r}"
        assert len(line) <= LINE_MAX, f"{len(line)} characters: {line[:80]!r}..."


def shape(data: bytes) -> str:
    """What a drawn file is made of, for the report of the slowest ones: its lines, its
    top-level keys, and the YAML features that cost (anchors, aliases, tags, documents)."""
    text = data.decode("utf-8", "replace")
    keys = list(dict.fromkeys(re.findall(r"^([A-Za-z_][-\w]*)\s*:", text, re.MULTILINE)))
    counts = {what: len(re.findall(pattern, text, re.MULTILINE)) for what, pattern in
              (("anchors", r"&[-\w]+"), ("aliases", r"\*[-\w]+"), ("tags", r"!!?\w+"),
               ("documents", r"^---"))}
    extra = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    return (f"{text.count(chr(10)) + 1} lines, keys: {', '.join(keys[:8]) or '-'}"
            f"{' +' + str(len(keys) - 8) if len(keys) > 8 else ''}" + (f"; {extra}" if extra else ""))


def _log(data: bytes, kind: str, seconds: float, lines: int) -> None:
    record = {"kind": kind, "seconds": round(seconds, 4), "bytes": len(data), "lines": lines,
              "shape": shape(data)}
    if seconds >= KEEP_INPUT_SECONDS or len(data) >= KEEP_INPUT_BYTES:
        record["input"] = base64.b64encode(data).decode()
    with open(LOG, "a") as log:  # type: ignore[arg-type]
        log.write(json.dumps(record) + "\n")
