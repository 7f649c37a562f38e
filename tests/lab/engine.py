"""A private Docker engine for tests that stop and start the engine itself.

The shared engine (CI's, a developer's) is never stopped: this one has its own
data root, exec root, pid file and socket, and runs in a network namespace of
its own, so its bridges and iptables rules never meet the shared engine's. It
takes its own containerd namespace too, in case it shares the system's
containerd. The node image is copied into it from the shared engine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

START_TIMEOUT = 60.0


class PrivateEngine:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.netns = f"kgen-engine-{tag}"
        # Not under pytest's tmp_path: runs side by side prune each other's old ones.
        self.data_root = Path(f"/var/lib/kgen-engine-{tag}")
        self.exec_root = Path(f"/run/kgen-engine-{tag}")  # short: unix socket paths are
        self.socket = self.exec_root / "docker.sock"       # limited to 108 bytes
        self.pidfile = self.exec_root / "docker.pid"
        self.log = Path(f"/var/log/kgen-engine-{tag}.log")  # kept for a failure's post-mortem
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "-H", self.host, *args], capture_output=True, text=True,
                              timeout=timeout)

    def create(self) -> None:
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", "dockerd",
             "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
             "--pidfile", str(self.pidfile), "-H", self.host, "--bridge=none",
             "--containerd-namespace", self.netns,
             "--containerd-plugins-namespace", f"{self.netns}-plugins"],
            stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private dockerd did not come up; see {self.log}")
            time.sleep(0.2)

    def answers(self) -> bool:
        try:
            return self.docker("info", timeout=10).returncode == 0
        except subprocess.TimeoutExpired:  # busy restoring its containers: ask again
            return False

    def containerd_pid(self) -> int | None:
        try:
            return int((self.exec_root / "containerd" / "containerd.pid").read_text())
        except (OSError, ValueError):
            return None

    def crash(self) -> None:
        """dockerd and its containerd die outright (SIGKILL), as in a crash: nothing is
        stopped cleanly; the containers' shims live on, as they do then."""
        assert self.proc is not None
        containerd = self.containerd_pid()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        if containerd is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(containerd, signal.SIGKILL)
            _wait_gone(containerd)
        self.proc = None
        self.pidfile.unlink(missing_ok=True)
        # A dead containerd's pid may linger until its new parent reaps it; the next
        # dockerd would take it for a live one and wait for its socket.
        (self.exec_root / "containerd" / "containerd.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        """dockerd stops as on a host's shutdown (SIGTERM): it stops every container."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.proc = None

    def copy_image(self, tag: str) -> None:
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "-H", self.host, "load"], stdin=save.stdout,
                              capture_output=True, text=True, timeout=300)
        save.wait(timeout=60)
        if save.returncode != 0 or load.returncode != 0:
            raise RuntimeError(f"copying {tag} into the private engine failed: {load.stderr}")

    def destroy(self) -> None:
        """Everything the engine made goes: containers, networks, the daemon, its files."""
        if self.proc is None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.start()
        with contextlib.suppress(subprocess.TimeoutExpired):
            ids = self.docker("ps", "-aq").stdout.split()
            if ids:
                self.docker("rm", "-f", *ids)
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        for pid in self._leftovers():  # an engine that never answered again: its shims
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            for mount in reversed(Path("/proc/self/mounts").read_text().splitlines()):
                where = mount.split()[1]
                if where.startswith((str(self.data_root), str(self.exec_root))):
                    subprocess.run(["umount", "-l", where], capture_output=True)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        shutil.rmtree(self.data_root, ignore_errors=True)

    def _leftovers(self) -> list[int]:
        """Processes of this engine (their command line names its exec root) and
        their descendants (the containers' processes), deepest first."""
        marker = f"{self.exec_root}/".encode()
        roots = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if marker in (entry / "cmdline").read_bytes():
                        roots.append(int(entry.name))
        found: list[int] = []
        todo = list(roots)
        while todo:
            pid = todo.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
        return list(reversed(found))


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":  # dead, waiting to be reaped: no longer serving anything
            return
        time.sleep(0.1)


def cannot_run() -> str | None:
    """Why this machine cannot run a private engine, or None when it can."""
    if os.geteuid() != 0:
        return "a private Docker engine needs root"
    missing = [tool for tool in ("dockerd", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        return f"a private Docker engine needs {', '.join(missing)}"
    return None
