"""Which lab a command means (docs/reference.md, "Which lab"): the one resolver every command uses.

`-l LAB` is a path to a lab file, else the name of a running lab (found from
any directory through its labels, `generator.runtime.registry`), else the name
of a built-in lab. Without `-l`: `./lab.yaml` if present, else the built-in
demo. A lab that runs is acted on where it runs: its rendered directory is
the one its containers record, whatever the current directory.

Light on purpose: `kgen exec` resolves its lab through here, so only the lab's
name is read from a lab file (its top-level `name:` line, else one YAML load;
no validation) until a command asks for the validated model with
`LabRef.model()`, and the engine is asked once: one `registry.Snapshot` serves
every question of the resolution, and stays on the `LabRef` (`ref.registry`)
for the command's own questions.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from generator.cluster.names import rendered_dir
from generator.resources import builtin_labs, labs_dir
from generator.runtime.errors import EngineUnreachable
from generator.runtime.paths import LabPaths
from generator.runtime.registry import LAB_NAME, RunningLab, Snapshot

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see runtime/paths.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")
    from generator.lab.errors import LabError
    from generator.lab.model import Lab
    from generator.node.contract import Cluster


def _lab_error(message: str, source: str) -> LabError:
    from generator.lab.errors import LabError

    return LabError.one("", message, source)

DEFAULT_LAB_FILE = Path("lab.yaml")
DEFAULT_LAB = "demo"


class LabRef:
    """A resolved lab: its name, where it is rendered, its lab file, and whether it runs.

    name: the lab's name; paths: the running lab's directory, else ./kgen-<name>/;
    file: the lab file (None when only a name is known); running: what of it is on
    the Docker engine; arg: what to give `-l` to mean this lab again (from any
    directory when it runs); given_file: the lab file was named by the user (or is
    ./lab.yaml), not looked up; registry: the engine's labs as read for this command.
    """

    def __init__(self, name: str, paths: LabPaths, file: Path | None, running: RunningLab | None,
                 arg: str, given_file: bool = False, registry: Snapshot | None = None,
                 unreachable: EngineUnreachable | None = None) -> None:
        self.name = name
        # The engine did not answer: whether the lab runs is unknown (a lab file still renders).
        self.unreachable = unreachable
        self.paths = paths
        self.file = file
        self.running = running
        self.arg = arg
        self.given_file = given_file
        self.registry = registry if registry is not None else Snapshot()
        self._model: Lab | None = None

    def __repr__(self) -> str:
        return (f"LabRef({self.name!r}, {self.paths!r}, file={self.file!r}, "
                f"running={self.running is not None}, arg={self.arg!r})")

    @property
    def is_up(self) -> bool:
        """At least one of its containers runs (EngineUnreachable when that cannot be known)."""
        if self.unreachable is not None:
            raise self.unreachable
        return self.running is not None and self.running.running > 0

    @property
    def flag(self) -> str:
        """`-l ...` for hints in messages."""
        return f"-l {shlex.quote(self.arg)}"

    @property
    def file_flag(self) -> str:
        """`-l FILE` for `kgen up` hints (the file, else the name)."""
        if self.file is None or self.file.parent == labs_dir():
            return self.flag
        return f"-l {shlex.quote(_shown(self.file))}"

    def model(self) -> Lab:
        """The validated lab file (LabError, exit 2, when it does not validate)."""
        if self._model is None:
            if self.file is None:
                raise _lab_error(f"lab {self.name} runs, but the lab file it came up from is "
                                 "not recorded; give it with -l FILE", self.arg)
            self._model = _load(self.file)
        return self._model

    def cluster(self) -> Cluster | None:
        """The rendered desired cluster (cluster.json), if the lab was rendered."""
        return self.paths.cluster()

    def same_file(self, running: RunningLab) -> bool:
        """True when `running` came up from this lab file (or, lacking a record, in this directory)."""
        if running.file is not None and self.file is not None:
            return running.file == self.file.resolve()
        return running.dir is not None and running.dir == rendered_dir(self.name).resolve()


def _load(path: Path) -> Lab:
    from generator.lab.model import load_lab

    return load_lab(path)


def _shown(path: Path) -> str:
    """A path as short as it can be shown: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# A block-style top-level `name:` line: at column 0 it can be nothing else in YAML.
_NAME_LINE = re.compile(r"""^name:[ \t]*(["']?)([a-z][a-z0-9-]{0,19})\1[ \t]*(?:#.*)?$""", re.M)


def quick_name(path: Path) -> str | None:
    """The `name` of a lab file, read without validating the rest; None if unreadable.

    One `name:` line at the top level is read as is (no YAML parser to import on
    the exec path); anything else (flow style, a repeated key) goes through YAML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = _NAME_LINE.findall(text)
    if len(lines) == 1 and text.count("\nname") + text.startswith("name") == 1:
        return str(lines[0][1])
    import yaml

    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) and LAB_NAME.fullmatch(name) else None


def _where(name: str, running: RunningLab | None) -> LabPaths:
    if running is not None and running.dir is not None:
        return LabPaths(running.dir)
    return LabPaths(rendered_dir(name))


def from_file(path: Path, arg: str, given: bool = True, registry: Snapshot | None = None) -> LabRef:
    """The lab of a lab file; when a lab of its name runs, where that one is."""
    registry = registry if registry is not None else Snapshot()
    name = quick_name(path)
    running = None
    if name is None:
        # Unreadable, or no usable name: a running lab may still say it came from here
        # (an edited-into-invalid file must not keep its lab from going down).
        running, _ = _asking(registry.from_file, path)
        name = running.name if running is not None else _load(path).name  # the file's own error
    unreachable = None
    if running is None:
        running, unreachable = _asking(registry.find, name)
    shown = running.name if running is not None else arg
    return LabRef(name, _where(name, running), path, running, shown, given, registry, unreachable)


def _asking(lookup: Callable[[T], RunningLab | None],
            arg: T) -> tuple[RunningLab | None, EngineUnreachable | None]:
    """The running lab a lookup finds, or None and why: no engine to ask."""
    try:
        return lookup(arg), None
    except EngineUnreachable as e:
        return None, e


def from_running(running: RunningLab, registry: Snapshot | None = None) -> LabRef:
    return LabRef(running.name, _where(running.name, running), running.file, running, running.name,
                  registry=registry)


def builtin(name: str, registry: Snapshot | None = None) -> LabRef:
    return from_file(labs_dir() / f"{name}.yaml", name, given=False, registry=registry)


def find_lab(lab: str | None, name_only: bool = False, registry: Snapshot | None = None) -> LabRef:
    """Resolve `-l LAB` (docs/reference.md, "Which lab"), asking the engine once.

    `name_only` (for `kgen down`): a lab name that is neither running, nor a file,
    nor built in still resolves, to a lab with nothing to take down.
    """
    registry = registry if registry is not None else Snapshot()
    if lab is None:
        if DEFAULT_LAB_FILE.is_file():
            return from_file(DEFAULT_LAB_FILE, str(DEFAULT_LAB_FILE), registry=registry)
        return builtin(DEFAULT_LAB, registry)
    path = Path(lab)
    if path.is_file():
        return from_file(path, lab, registry=registry)
    running, unreachable = _asking(registry.find, lab)
    if running is not None:
        return from_running(running, registry)
    if lab in builtin_labs():
        return builtin(lab, registry)
    if unreachable is not None:  # it may be a lab that runs: the engine cannot say
        raise unreachable
    if name_only and LAB_NAME.fullmatch(lab):
        return LabRef(lab, LabPaths(rendered_dir(lab)), None, None, lab, registry=registry)
    names = ", ".join(r.name for r in registry.labs(networks=False)) or "none"
    raise _lab_error("no such lab file, no running lab and no built-in lab of that name "
                     f"(running: {names}; built-in: {', '.join(builtin_labs())})", lab)


def rendered_lab(lab: str | None) -> tuple[LabRef, Cluster]:
    """The lab `-l LAB` means and its cluster.json, for commands that act inside it.

    LabError (exit 2) when a lab file was named and is bad; RuntimeFailure (exit 1)
    when the lab was never rendered."""
    from generator.runtime.errors import RuntimeFailure

    ref = find_lab(lab)
    cluster = ref.cluster()
    if cluster is None:
        if ref.given_file:
            ref.model()  # a bad lab file says so (exit 2)
        if ref.unreachable is not None:
            raise ref.unreachable
        raise RuntimeFailure(f"lab {ref.name} is not running; run `kgen up {ref.file_flag}`")
    return ref, cluster
