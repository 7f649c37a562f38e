"""The fast paths of loading a lab file give what the slow ones give (issue 17's 2 s bound):
the walk's own document equals PyYAML's safe constructor's, and the compiled schema test
says "valid" exactly when jsonschema finds no error."""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings

from generator.lab.errors import LabError
from generator.lab.load import parse_yaml
from generator.lab.suggest import suggest
from generator.lab.validate import _INLINED, _VALIDATOR, _fast
from tests.unit.lab_fuzz import lab_files

YAML_CASES = [
    "a: 1", "a: [1, 2, {b: c}]", "a: &x {b: 1}\nc: *x", "<<: {a: 1}\nb: 2", "a: 012",
    "a: 0x1f", "a: 1_000", "a: yes\nb: Off\nc: ~\nd: null\ne: 1.5\nf: .inf\ng: 2001-12-14",
    "a: !!set {x, y}", "a: !!omap [{a: 1}]", "a: -0\nb: +5\nc: '5'", "a: !!str 5",
    "a: !!int '7'", "- 1\n- two\n- [3]", "x", "", "a: !!binary aGVsbG8=", "a: 1:30", "'': 1",
    "a: !!float 1", "a: 99999999999999999999999999", "a: !!null x", "a: !!bool on",
]


def _typed(value: Any) -> Any:
    """The value with each leaf's type beside it: 1, 1.0 and true are equal in Python."""
    if isinstance(value, dict):
        return {_typed(k): _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def _both(text: str) -> tuple[Any, Any]:
    return _typed(yaml.load(text, Loader=yaml.CSafeLoader)), _typed(parse_yaml(text))


def test_the_walk_builds_what_pyyaml_builds() -> None:
    for text in YAML_CASES:
        theirs, ours = _both(text)
        assert ours == theirs, text


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(lab_files())
def test_fast_paths_agree_with_pyyaml_and_jsonschema_on_drawn_files(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
        doc = parse_yaml(text)
    except (LabError, UnicodeDecodeError):
        return  # refused before either fast path
    assert _typed(yaml.load(text, Loader=yaml.CSafeLoader)) == _typed(doc)
    assert _fast(_INLINED)(doc) == (next(_VALIDATOR.iter_errors(doc), None) is None)


def test_suggestions_are_difflibs() -> None:
    allowed = {"nodes", "pods", "services", "clients", "nodeNetwork", "podCIDR", "vxlan"}
    for key in ["nodez", "node", "pod", "servics", "nodez12345", "x", "", "NODENETWORK",
                "podcidrs", "vxlam", "clientz9", "zzzzzzzz"]:
        lowered = {k.lower(): k for k in allowed}
        close = difflib.get_close_matches(key.lower(), sorted(lowered), n=1, cutoff=0.6)
        want = f"did you mean {lowered[close[0]]!r}?" if close else \
            "known keys: " + ", ".join(sorted(allowed))
        assert suggest(key, allowed) == want, key
