"""The NetworkPolicy matrix, as Kubernetes' network-policy e2e tests print theirs.

Their TruthTable.PrettyPrint: a header row `-` then the destinations, one row
per source, `.` reachable, `X` blocked, `?` not probed; rows are from, columns
to, each labelled NAMESPACE/NAME. kgen pads the columns with spaces instead of
tabs, so that labels longer than a tab stop stay aligned. The rows come from
the netpol checks' results (kinds/netpol.py: one per source pod and port;
kinds/netpol_nodeport.py: one per client and NodePort, its columns the nodes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Truth = Mapping[tuple[str, str], bool | None]


def table(froms: list[str], tos: list[str], truth: Truth) -> str:
    """Rows from, columns to; `.` true, `X` false, `?` absent (not probed) or None."""
    width = max(len(label) for label in ["-", *froms])
    columns = [len(label) for label in tos]
    lines = ["  ".join([("-").ljust(width), *tos])]
    for src in froms:
        marks = []
        for dst, size in zip(tos, columns, strict=True):
            value = truth.get((src, dst))
            marks.append(("?" if value is None else "." if value else "X").ljust(size))
        lines.append("  ".join([src.ljust(width), *marks]).rstrip())
    return "\n".join(lines)


def matrices(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per matrix (its title, e.g. one per port probed): {"title", "froms", "tos",
    "expected", "observed"} from the rows of a run that carry one (`reach`, `fromPod`,
    `matrix`); a row deselected by -k is a source left out."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        if "reach" not in row or "matrix" not in row:
            continue
        m = found.setdefault(row["matrix"], {"title": row["matrix"], "froms": [], "tos": [],
                                             "expected": {}, "observed": {}})
        m["froms"].append(row["fromPod"])
        for dst, r in row["reach"].items():
            if dst not in m["tos"]:
                m["tos"].append(dst)
            m["expected"][(row["fromPod"], dst)] = r["expected"]
            m["observed"][(row["fromPod"], dst)] = r["observed"]
    return list(found.values())


def report(rows: list[dict[str, Any]]) -> str:
    """The observed matrix of every port probed; where it differs from the expected one,
    the expected matrix and the comparison too (`.` agrees, `X` differs), as the suite
    prints a failure."""
    out = []
    for m in matrices(rows):
        what = m["title"]
        out += [f"{what} (observed):", table(m["froms"], m["tos"], m["observed"])]
        if m["observed"] != m["expected"]:
            agree = {k: m["observed"].get(k) == v for k, v in m["expected"].items()}
            out += [f"{what} (expected):", table(m["froms"], m["tos"], m["expected"]),
                    f"{what} (comparison, X: differs):", table(m["froms"], m["tos"], agree)]
        out.append("")
    return "\n".join(out).rstrip("\n")
