"""The agent's sleep (waker.py): a file replaced in a watched directory, a pod process
ending and another thread each end it at once; nothing else does."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from generator.node.contract import write_json_atomic
from generator.node.waker import Waker


def slept(waker: Waker, timeout: float) -> float:
    started = time.monotonic()
    waker.wait(timeout)
    return time.monotonic() - started


def test_a_quiet_agent_sleeps_its_whole_period(tmp_path: Path) -> None:
    waker = Waker([tmp_path])
    assert waker.complete
    (tmp_path / "sub").mkdir()
    assert slept(waker, 0.0) < 0.5  # the mkdir's event, used up
    (tmp_path / "sub" / "heartbeat").touch()  # a subdirectory is not watched
    assert slept(waker, 0.3) >= 0.29


def test_a_replaced_file_wakes_it_at_once(tmp_path: Path) -> None:
    waker = Waker([tmp_path])
    timer = threading.Timer(0.2, write_json_atomic, (tmp_path / "node-1.json", {"pods": {}}))
    timer.start()
    assert 0.15 < slept(waker, 10.0) < 5.0
    timer.join()
    waker.wait(0.0)  # the write's later events (it woke at the first)
    assert slept(waker, 0.3) >= 0.29, "its events were used up"


def test_a_pod_process_that_ends_wakes_it(tmp_path: Path) -> None:
    waker = Waker([tmp_path])
    process = subprocess.Popen(["sleep", "0.3"])
    waker.watch_processes([process.pid])
    assert waker.complete
    assert 0.2 < slept(waker, 10.0) < 5.0
    assert process.wait(5) == 0
    waker.watch_processes([])  # reaped: no longer watched
    assert waker.pidfds == {} and slept(waker, 0.2) >= 0.19


def test_a_process_already_gone_leaves_it_polling(tmp_path: Path) -> None:
    waker = Waker([tmp_path])
    process = subprocess.Popen(["true"])
    process.wait(5)
    waker.watch_processes([process.pid])  # reaped before it could be watched
    assert not waker.complete


def test_another_thread_wakes_it(tmp_path: Path) -> None:
    waker = Waker([tmp_path])
    timer = threading.Timer(0.2, waker.wake)
    timer.start()
    assert 0.15 < slept(waker, 10.0) < 5.0
    timer.join()
    for _ in range(100_000):  # a full pipe does not block the waking thread
        waker.wake()
    assert slept(waker, 0.0) < 1.0 and slept(waker, 0.2) >= 0.19


def test_no_inotify_means_polling(tmp_path: Path) -> None:
    waker = Waker([tmp_path / "missing"])  # a directory that cannot be watched
    assert waker.inotify is None and not waker.complete
