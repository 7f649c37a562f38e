"""Issue 10: which lab `-l` means (one resolver for every command), running labs read
back from their labels, and the `kgen exec` fast path. No Docker engine: the
engine's answers are canned `docker ps` / `docker network ls` lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from generator.__main__ import parse_exec
from generator.lab.errors import LabError
from generator.runtime import locate, registry
from generator.runtime.errors import EngineUnreachable
from generator.runtime.registry import SEP, Member, RunningLab
from tests.conftest import ROOT

DEMO = ROOT / "labs" / "demo.yaml"


class Engine:
    """What `docker ps -a` and `docker network ls` print, filtered as Docker filters."""

    def __init__(self) -> None:
        self.containers: list[list[str]] = []
        self.networks: list[list[str]] = []
        self.calls: list[tuple[str, ...]] = []

    def container(self, name: str, lab: str, state: str = "running", role: str = "node",
                  dir: str = "<no value>", file: str = "<no value>",
                  compose_dir: str = "<no value>") -> None:
        self.containers.append([name, state, role, lab, dir, file, compose_dir])

    def network(self, name: str, lab: str, dir: str = "<no value>", file: str = "<no value>") -> None:
        self.networks.append([name, lab, dir, file, "<no value>"])

    def __call__(self, *args: str) -> list[list[str]]:
        self.calls.append(args)
        selector = args[args.index("--filter") + 1]
        wanted = selector.split("=", 2)[2] if selector.count("=") == 2 else None
        rows, lab_at = (self.containers, 3) if args[0] == "ps" else (self.networks, 1)
        return [r for r in rows if wanted is None or r[lab_at] == wanted]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    fake = Engine()
    monkeypatch.setattr(registry, "_api_rows", lambda kind, selector, socket_path: None)  # the CLI's way
    monkeypatch.setattr(registry, "_docker", fake)
    return fake


def write_lab(path: Path, name: str, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"name: {name}\nnodes: [n0]\n{extra}")
    return path


# --- the registry: running labs from labels ---------------------------------------------

def test_running_labs_are_read_from_their_labels(engine: Engine, tmp_path: Path) -> None:
    where = {"dir": str(tmp_path / "kgen-a"), "file": str(tmp_path / "a.yaml")}
    engine.container("kgen-a-n1", "a", **where)
    engine.container("kgen-a-n0", "a", state="exited", **where)
    engine.container("kgen-a-c0", "a", role="client", **where)
    engine.network("kgen-a", "a", **where)
    engine.container("kgen-old-n0", "old", compose_dir="/srv/kgen-old")  # an older kgen: no kgen.dir
    engine.network("kgen-gone", "gone", dir="/srv/kgen-gone")  # containers removed by hand
    labs = {lab.name: lab for lab in registry.running_labs()}
    assert sorted(labs) == ["a", "gone", "old"]
    a = labs["a"]
    assert (a.dir, a.file) == (tmp_path / "kgen-a", tmp_path / "a.yaml")
    assert [m.name for m in a.containers] == ["kgen-a-c0", "kgen-a-n0", "kgen-a-n1"]
    assert [m.name for m in a.nodes] == ["kgen-a-n0", "kgen-a-n1"] and a.running == 2
    assert a.networks == ["kgen-a"]
    assert (labs["old"].dir, labs["old"].file) == (Path("/srv/kgen-old"), None)
    assert labs["gone"].containers == [] and labs["gone"].dir == Path("/srv/kgen-gone")


def test_the_directory_most_objects_record_wins(engine: Engine) -> None:
    engine.container("kgen-a-n0", "a", dir="/x/kgen-a")
    engine.container("kgen-a-n1", "a", dir="/x/kgen-a")
    engine.container("kgen-a-n2", "a", dir="/y/kgen-a")
    assert registry.running_labs()[0].dir == Path("/x/kgen-a")


def test_a_named_lookup_asks_for_networks_only_when_no_container_is_left(engine: Engine) -> None:
    engine.container("kgen-a-n0", "a", dir="/x/kgen-a")
    engine.network("kgen-b", "b", dir="/x/kgen-b")
    assert registry.find_running("a").dir == Path("/x/kgen-a")
    assert [c[0] for c in engine.calls] == ["ps"], "one docker call on the exec path"
    assert registry.find_running("b").dir == Path("/x/kgen-b")
    assert registry.find_running("c") is None
    assert registry.find_running("Not A Name") is None


def test_fields_are_split_on_a_separator_paths_do_not_hold() -> None:
    assert SEP not in registry.CONTAINER_FORMAT.replace(SEP, "")
    assert registry.CONTAINER_FORMAT.count(SEP) == 6 and registry.NETWORK_FORMAT.count(SEP) == 4


def test_no_docker_is_not_taken_for_no_running_lab(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(EngineUnreachable, match=f"at unix://{tmp_path}/no.sock: is dockerd"):
        registry.running_labs()


@pytest.mark.parametrize(("env", "socket_path"), [
    ({}, "/var/run/docker.sock"),
    ({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, "/run/user/1000/docker.sock"),
    ({"DOCKER_HOST": "tcp://10.0.0.1:2375"}, None),
    ({"DOCKER_HOST": "ssh://me@host"}, None),
    ({"DOCKER_CONTEXT": "remote"}, None),
    ({"DOCKER_CONTEXT": "default"}, "/var/run/docker.sock"),
])
def test_the_engine_socket_is_used_only_where_the_cli_would_use_it(
        tmp_path: Path, env: dict[str, str], socket_path: str | None) -> None:
    assert registry.local_socket({"HOME": str(tmp_path), **env}) == socket_path


def test_a_docker_context_in_the_cli_config_leaves_it_to_the_cli(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    assert registry.local_socket({"DOCKER_CONFIG": str(tmp_path)}) is None
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}}))
    assert registry.local_socket({"DOCKER_CONFIG": str(tmp_path)}) == "/var/run/docker.sock"


class FakeEngine:
    """A unix socket that answers one canned HTTP response per connection and keeps the requests."""

    def __init__(self, path: Path, status: str, body: object) -> None:
        import socket
        import threading

        self.requests: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        payload = json.dumps(body).encode()
        self.response = (f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n\r\n".encode()
                         + payload)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                self.requests.append(conn.recv(65536).decode())
                conn.sendall(self.response)

    def close(self) -> None:
        self.server.close()


def test_labelled_objects_are_read_from_the_engine_api(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "docker.sock"
    engine = FakeEngine(sock, "200 OK", [
        {"Names": ["/kgen-web-n0"], "State": "running",
         "Labels": {"kgen.lab": "web", "kgen.role": "node", "kgen.dir": "/x/kgen-web",
                    "kgen.file": "/x/web.yaml"}},
        {"Names": ["/kgen-web-c0"], "State": "exited",
         "Labels": {"kgen.lab": "web", "kgen.role": "client",
                    "com.docker.compose.project.working_dir": "/x/kgen-web"}}])
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(registry, "_docker", lambda *args: pytest.fail("the CLI was run"))
    try:
        lab = registry.find_running("web")
    finally:
        engine.close()
    assert lab is not None
    assert (lab.dir, lab.file) == (Path("/x/kgen-web"), Path("/x/web.yaml"))
    assert lab.containers == [Member("kgen-web-c0", "exited", "client"),
                              Member("kgen-web-n0", "running", "node")]
    request = engine.requests[0].splitlines()[0]
    assert request.startswith("GET /containers/json?all=1&filters=") and request.endswith(" HTTP/1.0")
    from urllib.parse import unquote

    assert json.loads(unquote(request.split("filters=")[1].split()[0])) == {"label": ["kgen.lab=web"]}


def test_an_engine_error_falls_back_to_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "docker.sock"
    engine = FakeEngine(sock, "500 Internal Server Error", {"message": "boom"})
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    monkeypatch.setenv("HOME", str(tmp_path))
    cli: list[tuple[str, ...]] = []
    monkeypatch.setattr(registry, "_docker", lambda *args: cli.append(args) or [])
    try:
        assert registry.find_running("web") is None
    finally:
        engine.close()
    assert cli and cli[0][0] == "ps"


def lab_dir(tmp_path: Path, ready: dict[str, bool]) -> Path:
    root = tmp_path / "kgen-a"
    (root / "config").mkdir(parents=True)
    (root / "state").mkdir()
    nodes = [{"name": n} for n in ready]
    (root / "config" / "cluster.json").write_text(json.dumps(
        {"name": "a", "generation": "g1", "nodes": nodes, "pods": [{}, {}, {}], "clients": [{}]}))
    for node, ok in ready.items():
        (root / "state" / f"{node}.json").write_text(json.dumps({"ready": ok, "generation": "g1"}))
    return root


def test_ls_rows_count_from_the_rendered_lab_and_say_its_state(tmp_path: Path) -> None:
    root = lab_dir(tmp_path, {"n0": True, "n1": True})
    up = [Member("kgen-a-n0", "running", "node"), Member("kgen-a-n1", "running", "node")]
    row = registry.describe(RunningLab("a", root, tmp_path / "a.yaml", up, ["kgen-a"]))
    assert row == {"name": "a", "nodes": 2, "pods": 3, "clients": 1, "state": "Ready",
                   "containers": {"running": 2, "total": 2},
                   "file": str(tmp_path / "a.yaml"), "dir": str(root)}
    (root / "state" / "n1.json").write_text(json.dumps({"ready": True, "generation": "old"}))
    assert registry.describe(RunningLab("a", root, None, up))["state"] == "NotReady"
    half = [up[0], Member("kgen-a-n1", "exited", "node")]
    assert registry.describe(RunningLab("a", root, None, half))["state"] == "Degraded"
    down = [Member(m.name, "exited", "node") for m in up]
    assert registry.describe(RunningLab("a", root, None, down))["state"] == "Stopped"
    assert registry.describe(RunningLab("a", root, None, [], ["kgen-a"]))["state"] == "Absent"
    gone = registry.describe(RunningLab("a", tmp_path / "nowhere", None, up))
    assert (gone["nodes"], gone["pods"], gone["state"]) == (2, None, "Running")


# --- the resolver -------------------------------------------------------------------------

def test_default_is_lab_yaml_here_else_the_builtin_demo(engine: Engine, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ref = locate.find_lab(None)
    assert (ref.name, ref.file, ref.running, ref.given_file) == ("demo", DEMO, None, False)
    assert ref.paths.root == tmp_path / "kgen-demo" and ref.flag == "-l demo"
    write_lab(tmp_path / "lab.yaml", "mine")
    ref = locate.find_lab(None)
    assert (ref.name, ref.file, ref.given_file) == ("mine", Path("lab.yaml"), True)
    assert ref.paths.root == tmp_path / "kgen-mine" and ref.flag == "-l lab.yaml"
    assert ref.model().name == "mine"


def test_a_running_lab_is_found_by_name_from_any_directory(engine: Engine, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    lab_file = write_lab(tmp_path / "a" / "lab.yaml", "web")
    engine.container("kgen-web-n0", "web", dir=str(tmp_path / "a" / "kgen-web"), file=str(lab_file))
    monkeypatch.chdir(write_lab(tmp_path / "b" / "lab.yaml", "other").parent)
    ref = locate.find_lab("web")
    assert ref.paths.root == tmp_path / "a" / "kgen-web"
    assert ref.file == lab_file and ref.running is not None and not ref.given_file
    assert ref.flag == "-l web"
    assert ref.model().name == "web"


def test_a_lab_file_whose_name_runs_elsewhere_means_that_running_lab(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = write_lab(tmp_path / "a" / "lab.yaml", "web")
    engine.container("kgen-web-n0", "web", dir=str(tmp_path / "a" / "kgen-web"), file=str(first))
    second = write_lab(tmp_path / "b" / "lab.yaml", "web")
    monkeypatch.chdir(tmp_path / "b")
    ref = locate.find_lab(None)
    assert ref.file == Path("lab.yaml") and ref.paths.root == tmp_path / "a" / "kgen-web"
    assert ref.running is not None and not ref.same_file(ref.running)
    assert ref.flag == "-l web" and ref.file_flag == "-l lab.yaml"
    assert locate.find_lab(str(first)).same_file(ref.running)
    assert not locate.find_lab(str(second)).same_file(ref.running)


def test_a_running_lab_without_a_recorded_file_is_the_same_lab_in_its_directory(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_lab(tmp_path / "lab.yaml", "web")
    engine.container("kgen-web-n0", "web", compose_dir=str(tmp_path / "kgen-web"))
    ref = locate.find_lab(None)
    assert ref.running is not None and ref.same_file(ref.running)
    engine.containers[0][6] = "/elsewhere/kgen-web"
    ref = locate.find_lab(None)
    assert ref.running is not None and not ref.same_file(ref.running)


def test_a_path_comes_before_a_running_name_and_a_running_name_before_a_builtin(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine.container("kgen-demo-n0", "demo", dir="/srv/kgen-demo", file="/srv/demo.yaml")
    assert locate.find_lab("demo").paths.root == Path("/srv/kgen-demo")
    write_lab(tmp_path / "demo", "fromfile")  # a file named like the lab
    assert locate.find_lab("demo").name == "fromfile"
    assert locate.find_lab("host-gw").name == "hostgw"  # built-in, not running


@pytest.mark.parametrize(("lab", "asked"), [
    ("web", ["ps"]),                    # a running lab: its containers say it all
    ("gone", ["ps", "network"]),        # only its network is left
    ("demo", ["ps", "network"]),        # built in, not running
    ("nosuch", ["ps", "network"]),      # unknown: the error lists the running labs
    ("web.yaml", ["ps"]),               # a lab file whose lab runs
])
def test_resolving_a_lab_asks_the_engine_once_per_kind(engine: Engine, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       lab: str, asked: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    write_lab(tmp_path / "web.yaml", "web")
    engine.container("kgen-web-n0", "web", dir="/srv/kgen-web")
    engine.network("kgen-gone", "gone", dir="/srv/kgen-gone")
    try:
        ref = locate.find_lab(lab)
    except LabError:
        ref = None
    assert [c[0] for c in engine.calls] == asked
    if ref is not None:  # the command's own questions are answered from the same snapshot
        ref.registry.find("web")
        ref.registry.labs()
        assert [c[0] for c in engine.calls] == ["ps", "network"]


def test_an_unknown_lab_names_the_running_and_builtin_ones(engine: Engine) -> None:
    engine.container("kgen-web-n0", "web", dir="/srv/kgen-web")
    with pytest.raises(LabError) as err:
        locate.find_lab("nosuch")
    assert str(err.value).startswith("nosuch: no such lab file, no running lab")
    assert "running: web;" in str(err.value) and "demo" in str(err.value)


def test_down_takes_any_lab_name(engine: Engine, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ref = locate.find_lab("nosuch", name_only=True)
    assert (ref.name, ref.file, ref.running) == ("nosuch", None, None)
    with pytest.raises(LabError):
        ref.model()
    with pytest.raises(LabError):
        locate.find_lab("Not/A/Name", name_only=True)


def test_a_file_that_no_longer_parses_still_names_the_lab_it_brought_up(
        engine: Engine, tmp_path: Path) -> None:
    broken = tmp_path / "lab.yaml"
    broken.write_text("name: [\n")
    with pytest.raises(LabError):
        locate.find_lab(str(broken))  # nothing runs from it: the file's own error
    broken.write_bytes(b"name: [\n\xff")  # not even UTF-8 any more
    engine.container("kgen-web-n0", "web", dir=str(tmp_path / "kgen-web"), file=str(broken))
    ref = locate.find_lab(str(broken))
    assert ref.name == "web" and ref.paths.root == tmp_path / "kgen-web"
    with pytest.raises(LabError):
        ref.model()


def test_an_invalid_file_with_a_readable_name_resolves_until_validated(engine: Engine,
                                                                       tmp_path: Path) -> None:
    bad = write_lab(tmp_path / "lab.yaml", "web", "pods: [{name: p, node: n9}]\n")
    ref = locate.find_lab(str(bad))
    assert ref.name == "web"
    with pytest.raises(LabError, match="unknown node 'n9'"):
        ref.model()


@pytest.mark.parametrize(("text", "name"), [
    ("name: web\nnodes: [n0]\n", "web"),
    ("# a lab\nnodes: [n0]\nname: 'web'  # the lab\n", "web"),
    ('name: "web"\n', "web"),
    ("{name: web, nodes: [n0]}\n", "web"),  # flow style: through YAML
    ("nodes:\n  - name: n0\nname: web\n", "web"),
    ("name: web\nname: other\n", "other"),  # repeated: YAML's answer (validation refuses it)
    ("name: Web\n", None),
    ("name: [\n", None),
    ("nodes: [n0]\n", None),
])
def test_the_name_is_read_without_validating_the_rest(tmp_path: Path, text: str,
                                                      name: str | None) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    assert locate.quick_name(path) == name


# --- the exec fast path ----------------------------------------------------------------

@pytest.mark.parametrize(("args", "parsed"), [
    (["pod-0", "--", "ip", "-br", "a"], (None, "pod-0", ["ip", "-br", "a"])),
    (["-l", "web", "pod-0", "--", "true"], ("web", "pod-0", ["true"])),
    (["--lab", "x.yaml", "node-0"], ("x.yaml", "node-0", [])),
    (["--lab=web", "node-0", "hostname"], ("web", "node-0", ["hostname"])),
    (["node-0", "-l", "web", "--", "-l", "x"], ("web", "node-0", ["-l", "x"])),
    (["pod-0", "--"], (None, "pod-0", [])),
    (["-h"], None),
    (["pod-0", "ip", "-br", "a"], None),  # an option before `--`: typer decides
    (["-lweb", "pod-0"], None),
    (["-l"], None),
    (["--", "true"], None),
    ([], None),
])
def test_plain_exec_command_lines_take_the_fast_path(args: list[str], parsed: tuple | None) -> None:
    assert parse_exec(args) == parsed


def test_the_exec_path_imports_neither_typer_nor_docker_rich_jinja2_or_pydantic(
        tmp_path: Path) -> None:
    """`kgen exec` from the console script to the `docker exec` it becomes, in a fresh
    interpreter: which modules were loaded at the moment it would exec."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    lab = write_lab(tmp_path / "lab.yaml", "fast", "pods: [{name: p0, node: n0}]\n")
    subprocess.run([sys.executable, "-m", "generator", "render", "-l", str(lab)], cwd=tmp_path,
                   env=env, check=True, capture_output=True)
    where = str(tmp_path / "kgen-fast")
    probe = (
        "import json, sys\n"
        "import generator.runtime.execute as ex, generator.runtime.registry as reg\n"
        f"row = ['kgen-fast-n0', 'running', 'node', 'fast', {where!r}, {str(lab)!r}, '']\n"
        "reg._rows = lambda kind, selector: [row] if kind == 'containers' else []\n"
        "def fake(argv):\n"
        "    print(json.dumps({'argv': argv, 'modules': sorted(sys.modules)}))\n"
        "    sys.exit(0)\n"
        "ex.run_exec = fake\n"
        "sys.argv = ['kgen', 'exec', '-l', 'lab.yaml', 'p0', '--', 'true']\n"
        "from generator.__main__ import main\n"
        "main()\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, text=True,
                            capture_output=True, check=True, stdin=subprocess.DEVNULL)
    seen = json.loads(result.stdout)
    assert seen["argv"] == ["docker", "exec", "-i", "kgen-fast-n0", "ip", "netns", "exec", "p0",
                            "true"]
    heavy = {m.split(".")[0] for m in seen["modules"]} & {
        "typer", "docker", "rich", "jinja2", "pydantic", "click", "yaml",
        # Each of these costs more CPU at start-up than the rest of the exec path.
        "typing", "dataclasses", "hashlib"}
    assert heavy == set()
    assert "generator.lab.model" not in seen["modules"], "exec reads only the lab's name"


def test_importing_the_command_line_loads_nothing_heavy() -> None:
    """Every command module keeps its heavy imports inside its commands."""
    probe = ("import json, sys; import generator.cli; "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, check=True)
    assert set(json.loads(result.stdout)) & {"docker", "rich", "jinja2", "pydantic"} == set()
