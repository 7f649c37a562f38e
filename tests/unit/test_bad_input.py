"""Bad input ends in one line per error and the contract's exit status, never a traceback
or a hang (issue 17). Lab-file cases too large for a golden file, and the command
line's file-system and engine errors, run through the real `kgen` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from generator.lab.errors import LINE_MAX, LabError, Problem
from generator.lab.load import ALIAS_BUDGET, parse_yaml
from generator.lab.model import load_lab
from generator.lab.schema import NODE_PORT_RANGE
from tests.conftest import ROOT
from tests.unit.conftest import desired

DEMO = ROOT / "labs" / "demo.yaml"
SPAN = NODE_PORT_RANGE[1] - NODE_PORT_RANGE[0] + 1


def _node_port_lab(path: Path, auto: int, given: tuple[int, ...] = ()) -> Path:
    lines = ["name: many", "serviceCIDR: 10.96.0.0/16", "nodes: [node-0]", "services:"]
    lines += [f"  - {{name: s{i}, type: NodePort, ports: [{{port: 80}}]}}" for i in range(auto)]
    lines += [f"  - {{name: g{i}, type: NodePort, ports: [{{port: 80, nodePort: {n}}}]}}"
              for i, n in enumerate(given)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_more_node_ports_than_the_range_holds_are_refused_in_validation(tmp_path: Path) -> None:
    with pytest.raises(LabError) as err:
        load_lab(_node_port_lab(tmp_path / "lab.yaml", auto=3000))
    assert err.value.lines() == [f"{tmp_path}/lab.yaml: services: 3000 NodePort service ports "
                                 f"need a nodePort allocated but 30000-32767 has {SPAN} left"]
    with pytest.raises(LabError) as err:
        load_lab(_node_port_lab(tmp_path / "lab.yaml", auto=SPAN - 1, given=(30000, 32767)))
    assert f"{SPAN - 1} NodePort service ports need a nodePort allocated but 30000-32767 " \
           f"has {SPAN - 2} left" in str(err.value)


def test_a_range_exactly_full_of_node_ports_renders_every_one_distinct(tmp_path: Path) -> None:
    lab = load_lab(_node_port_lab(tmp_path / "lab.yaml", auto=SPAN - 2, given=(30000, 32767)))
    ports = [p["nodePort"] for s in desired(lab)["services"] if s["type"] == "NodePort"
             for p in s["ports"]]
    assert sorted(ports) == list(range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1))


def test_a_20_mb_name_is_shown_shortened_on_one_line(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: " + "a" * 20_000_000 + "\nnodes: [node-0]\n")
    with pytest.raises(LabError) as err:
        load_lab(lab)
    (line,) = err.value.lines()
    assert line.endswith("...(20000000 characters) is not a valid name (a lower-case letter, "
                         "then letters, digits and '-', at most 20 characters)")
    assert len(line) <= LINE_MAX


def _aliased(items: int, aliases: int) -> str:
    """A list of `items` scalars, anchored, then named by `aliases` aliases."""
    return (f"base: &b [{', '.join(['x'] * items)}]\n"
            f"copies: [{', '.join(['*b'] * aliases)}]\n")


def test_aliases_may_add_up_to_the_budget_and_no_more() -> None:
    # Each alias repeats the list and its items: items + 1 values.
    assert len(parse_yaml(_aliased(99, ALIAS_BUDGET // 100))["copies"]) == ALIAS_BUDGET // 100
    with pytest.raises(LabError) as err:
        parse_yaml(_aliased(99, ALIAS_BUDGET // 100 + 1), "lab.yaml")
    assert str(err.value) == (f"lab.yaml: copies[{ALIAS_BUDGET // 100}]: aliases expand the file "
                              f"by more than {ALIAS_BUDGET:,} values; write the values out, or "
                              "alias fewer of them")


def test_anchors_aliases_and_merge_keys_of_a_plain_lab_still_load(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: merged\nnodes: [node-0]\n"
                   "x-port: &http {name: http, port: 80, targetPort: 8080}\n"
                   "services:\n  - {name: a, ports: [{<<: *http, port: 81}]}\n"
                   "  - {name: b, ports: [*http]}\n")
    with pytest.raises(LabError) as err:  # x-port is not a lab key; all else is fine
        load_lab(lab)
    assert [p.path for p in err.value.problems] == ["x-port"]
    data = parse_yaml("base: &http {name: http, port: 80}\nports: [{<<: *http, port: 81}, *http]\n")
    assert data["ports"] == [{"name": "http", "port": 81}, {"name": "http", "port": 80}]


def test_a_value_repeated_through_aliases_reports_its_problems_once() -> None:
    with pytest.raises(LabError) as err:
        parse_yaml("a: &a {k: 1, k: 2}\nb: *a\nc: *a\n", "lab.yaml")
    assert err.value.lines() == ["lab.yaml: a.k: duplicate key (line 1; first on line 1)"]


def test_error_lines_escape_invisible_characters_and_stay_bounded() -> None:
    error = LabError([Problem("a\u202eb\u200bc.d\ne", "x" * 1000)], "lab\n.yaml")
    (line,) = error.lines()
    assert line.isprintable() and len(line) == LINE_MAX
    assert line.startswith("lab\\n.yaml: a\\u202eb\\u200bc.d\\ne: xxx")


# ---------------------------------------------------------------- command line


def kgen(*args: str, cwd: Path, env: dict[str, str] | None = None,
         stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "generator", *args], cwd=cwd, text=True,
                          env={**os.environ, **(env or {})}, stdout=stdout,
                          stderr=subprocess.PIPE, timeout=120)


def one_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_schema_into_a_full_disk_is_one_line(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        result = kgen("schema", cwd=tmp_path, stdout=full.fileno())
    assert one_line(result, 1) == "kgen: error: cannot write the output: No space left on device"


def test_render_into_a_file_or_a_format_word_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    line = one_line(kgen("render", "-l", str(DEMO), "-o", "afile", cwd=tmp_path), 2)
    assert line == "kgen: -o afile: is a file; -o names a directory to write into"
    line = one_line(kgen("render", "-l", str(DEMO), "-o", "json", cwd=tmp_path), 2)
    assert line.startswith("kgen: -o json: -o names the directory to write into")
    assert not (tmp_path / "json").exists()


def test_render_where_nothing_can_be_written_is_one_line(tmp_path: Path) -> None:
    line = one_line(kgen("render", "-l", str(DEMO), "-o", "/proc/nope", cwd=tmp_path), 1)
    assert line == "kgen: error: /proc/nope: No such file or directory"


def test_graph_into_a_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "pictures").mkdir()
    line = one_line(kgen("graph", "-l", str(DEMO), "--from-file", "--format", "mermaid", "-o",
                         "pictures", cwd=tmp_path), 1)
    assert line == "kgen: error: pictures: Is a directory"


def test_graph_without_graphviz_says_how_to_install_it(tmp_path: Path) -> None:
    line = one_line(kgen("graph", "-l", str(DEMO), "--from-file", "-o", "g.svg", cwd=tmp_path,
                         env={"PATH": str(tmp_path)}), 1)
    assert line.endswith("install Graphviz: apt-get install graphviz")
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.parametrize("args", [["ls"], ["ls", "--json"], ["status", "-l", "demo"],
                                  ["exec", "-l", "demo", "node-0", "--", "true"],
                                  ["logs", "-l", "demo", "pod-0"], ["down", "-l", "demo"],
                                  ["exec", "-l", "nolab", "node-0", "--", "true"]])
def test_an_engine_that_does_not_answer_is_not_taken_for_no_lab(tmp_path: Path,
                                                                args: list[str]) -> None:
    socket = f"unix://{tmp_path}/docker.sock"
    line = one_line(kgen(*args, cwd=tmp_path, env={"DOCKER_HOST": socket}), 1)
    assert line == f"kgen: error: cannot reach the Docker engine at {socket}: is dockerd running?"


def test_render_needs_no_engine(tmp_path: Path) -> None:
    result = kgen("render", "-l", "demo", cwd=tmp_path,
                  env={"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "kgen-demo" / "docker-compose.yml").is_file()
