"""Which lab a command means: `-l LAB` is a path or a built-in lab's name."""

from __future__ import annotations

from pathlib import Path

from generator.lab.errors import LabError
from generator.lab.model import Lab, load_lab
from generator.resources import builtin_labs, labs_dir

DEFAULT_LAB_FILE = Path("lab.yaml")
DEFAULT_LAB = "demo"


def resolve(lab: str | None) -> Path:
    """A lab argument to a file: a path if it exists, else a built-in name."""
    if lab is None:
        return DEFAULT_LAB_FILE if DEFAULT_LAB_FILE.is_file() else labs_dir() / f"{DEFAULT_LAB}.yaml"
    path = Path(lab)
    if path.is_file():
        return path
    if lab in builtin_labs():
        return labs_dir() / f"{lab}.yaml"
    known = ", ".join(builtin_labs())
    raise LabError.one("", f"no such lab file, and no built-in lab of that name (built-in: {known})",
                   lab)


def open_lab(lab: str | None) -> Lab:
    return load_lab(resolve(lab))
