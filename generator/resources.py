"""Where kgen's own files are: inside the wheel, or at the top of a checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`templates` or `labs`: packaged into the wheel, top-level in a checkout."""
    packaged = PACKAGE_DIR / name
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / name


def templates_dir() -> Path:
    return data_dir("templates")


def labs_dir() -> Path:
    return data_dir("labs")


def builtin_labs() -> list[str]:
    return sorted(p.stem for p in labs_dir().glob("*.yaml"))


def node_package_files() -> list[Path]:
    """The files copied into the node image: stdlib-only code, sorted for hashing."""
    files = [PACKAGE_DIR / "__init__.py"]
    files += sorted(p for p in (PACKAGE_DIR / "node").rglob("*.py") if "__pycache__" not in p.parts)
    return files
