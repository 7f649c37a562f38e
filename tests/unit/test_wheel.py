"""`pip install .` must work, not only `-e`: the wheel carries templates and labs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True)
    return next(out.glob("kgen-*.whl"))


def test_wheel_ships_templates_labs_and_node_code(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("generator/templates/docker-compose.yml.j2",
                     "generator/templates/Dockerfile.node.j2",
                     "generator/labs/demo.yaml",
                     "generator/labs/kgen-lab.schema.json",
                     "generator/node/agent.py",
                     "generator/checks/test_datapath.py"):
        assert expected in names, expected
    assert not any(n.startswith("tests/") for n in names)


def test_wheel_carries_the_license_it_declares(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (license_file,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert archive.read(license_file) == (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in archive.read(license_file).splitlines()[1]
    metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    lines = archive.read(metadata).decode().splitlines()
    assert "License-Expression: Apache-2.0" in lines and "License-File: LICENSE" in lines


def test_installed_wheel_renders_the_demo(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "import generator; "
            "assert generator.__file__.startswith(sys.argv[1]), generator.__file__; "
            "from generator.cli import app; app(['render'])")
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=work,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (work / "kgen-demo" / "docker-compose.yml").is_file()
