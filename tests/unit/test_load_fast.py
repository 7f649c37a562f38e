"""The fast paths of loading a lab file give what the slow ones give (issue 17's 2 s bound):
the walk's own document equals PyYAML's safe constructor's, and the compiled schema test
says "valid" exactly when jsonschema finds no error."""

from __future__ import annotations

import difflib
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.lab.errors import LabError
from generator.lab.load import _parse_thoroughly, parse_yaml
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


SUGGESTED = {"nodes", "pods", "services", "clients", "nodeNetwork", "podCIDR", "vxlan",
             "nodeCIDRMaskSize", "serviceCIDR"}


def difflibs(key: str, allowed: set[str]) -> str:
    lowered = {k.lower(): k for k in allowed}
    close = difflib.get_close_matches(key.lower(), sorted(lowered), n=1, cutoff=0.6)
    return f"did you mean {lowered[close[0]]!r}?" if close else \
        "known keys: " + ", ".join(sorted(allowed))


def test_suggestions_are_difflibs() -> None:
    for key in ["nodez", "node", "pod", "servics", "nodez12345", "x", "", "NODENETWORK",
                "podcidrs", "vxlam", "clientz9", "zzzzzzzz", "nodecidrmasksizes" * 3]:
        assert suggest(key, SUGGESTED) == difflibs(key, SUGGESTED), key


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.text(alphabet="nodespicvrtlxwkCIDRNMS0129z-", max_size=40))
def test_suggestions_are_difflibs_for_any_key(key: str) -> None:
    """The per-letter counting of every key at once rules out only what difflib would."""
    assert suggest(key, SUGGESTED) == difflibs(key, SUGGESTED)


PROBLEM_CASES = [
    "a: 1\na: 2", "a: {b: 1, b: 2, c: [1, {d: 1, d: 2}]}", "a: &r [1, [2, *r]]", "a: &r {b: *r}",
    "a: " + "[" * 40 + "]" * 40, "a: &x [1, 2]\nb: [*x, *x]", "a: *nowhere", "a: &x 1\nb: &x 2",
    "a: 1\n---\nb: 2", "a: 2001-13-45", "a: !!int 9" + "9" * 100, "a: !!timestamp abc",
    "{[1]: 2}", "{*x : 1}", "&x a: *x", "a: !foo x", "a: !!float abc\nb: !!float 1e3",
    "a: !!str\nb: ! 12\nc: !!seq [1]\nd: !!map {e: 1}", "'1': a\n1: b", "<<: 1\n<<: 2",
    "x: &l {a: b, c: d}\n" + "".join(f"p{i}: *l\n" for i in range(3000)), "a: [1, 2",
    "name: !!set a0\nnodes: [a0]",  # Hypothesis found it: an empty set, not an error
    "a: !!omap x\nb: !!pairs y",
]


def _outcome(parse: Any, text: str) -> tuple[str, Any]:
    try:
        return "read", _typed(parse(text, "lab.yaml"))
    except LabError as err:
        return "refused", str(err)


STOPS = ("a recursive structure", "aliases expand the file", "nested deeper than")


def _same_reading(text: str) -> None:
    """The same document, or the same error lines. A problem that ends the walk (a
    recursive alias, the alias budget, the depth limit) ends the event builder's list
    where it is met; the node walk also lists the repeated keys of the mappings around
    it that come later in the file. So then: the same last line, and no line of its own."""
    fast, thorough = _outcome(parse_yaml, text), _outcome(_parse_thoroughly, text)
    if fast[0] == thorough[0] == "refused" and any(s in thorough[1] for s in STOPS):
        fast_lines, thorough_lines = fast[1].splitlines(), thorough[1].splitlines()
        assert fast_lines[-1] == thorough_lines[-1], text
        assert set(fast_lines) <= set(thorough_lines), text
    else:
        assert fast == thorough, text


def test_the_event_builder_reads_what_the_node_walk_reads() -> None:
    for text in YAML_CASES + PROBLEM_CASES + ["a: {b: 1, c: &r [*r], b: 2}"]:
        _same_reading(text)


@settings(max_examples=150, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(lab_files())
def test_the_event_builder_reads_drawn_files_as_the_node_walk(data: bytes) -> None:
    """The fast reading of a file and the thorough one: the same document, or the same
    error lines."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    _same_reading(text)


def test_a_collection_tag_on_a_scalar_is_refused_as_pyyaml_refuses_it() -> None:
    for text in ("name: !!set a0\n", "name: !!omap a0\n", "name: !!pairs a0\n"):
        with pytest.raises(yaml.constructor.ConstructorError):
            yaml.load(text, Loader=yaml.CSafeLoader)
        with pytest.raises(LabError, match="^name: line 1, column 7: expected a"):
            parse_yaml(text)
