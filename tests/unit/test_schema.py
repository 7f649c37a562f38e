"""The lab schema: one declaration for validation and editors (`kgen schema`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from typer.testing import CliRunner

from generator.cli import app
from generator.lab.model import load_lab
from tests.conftest import GOLDEN, ROOT

LABS = sorted((ROOT / "labs").glob("*.yaml"))
GOOD = sorted((GOLDEN / "good-labs").glob("*.yaml"))
PUBLISHED = ROOT / "labs" / "kgen-lab.schema.json"
MODELINE = "# yaml-language-server: $schema=kgen-lab.schema.json"


@pytest.fixture(scope="module")
def printed() -> dict:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_kgen_schema_is_valid_draft_07(printed: dict) -> None:
    assert printed["$schema"] == "http://json-schema.org/draft-07/schema#"
    Draft7Validator.check_schema(printed)


def test_the_published_file_is_what_kgen_schema_prints(printed: dict) -> None:
    assert json.loads(PUBLISHED.read_text()) == printed, "run: kgen schema > labs/kgen-lab.schema.json"


@pytest.mark.parametrize("path", LABS + GOOD, ids=lambda p: p.name)
def test_every_ready_and_golden_good_lab_validates(path: Path, printed: dict) -> None:
    Draft7Validator(printed).validate(yaml.safe_load(path.read_text()))
    assert load_lab(path).name


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_every_ready_lab_names_the_schema_for_editors(path: Path) -> None:
    assert path.read_text().splitlines()[0] == MODELINE


def test_the_schema_refuses_what_kgen_refuses(printed: dict) -> None:
    """Structural errors are the schema's: an editor shows the same ones."""
    bad = GOLDEN / "bad-labs"
    for case in ("unknown-top-key", "bad-backend", "port-not-int", "vni-range", "bad-pod-name",
                 "empty-containers", "node-not-a-name", "three-errors", "bad-proxy-mode"):
        assert not Draft7Validator(printed).is_valid(yaml.safe_load((bad / f"{case}.yaml").read_text()))
