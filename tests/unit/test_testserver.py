"""The pod test server and the probe client, on loopback."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from generator.node import probe
from generator.node.documents import encode_probe_jobs
from tests.conftest import ROOT, need_root_netns


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    http, udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen([sys.executable, "-m", "generator.node.testserver", "--name", "pod-x",
                             "--host", "127.0.0.1", "--http-port", str(http), "--udp-port",
                             str(udp)], cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while probe.attempt("http", "127.0.0.1", http, "/healthz", 0.5)["ok"] is False:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.05)
    yield http, udp, proc
    proc.send_signal(signal.SIGINT)  # SIGTERM only drains it
    proc.wait(5)


def ask(mode: str, port: int, arg: str) -> dict:
    return probe.attempt(mode, "127.0.0.1", port, arg, 2.0)


def test_http_endpoints(server: tuple[int, int, subprocess.Popen[bytes]]) -> None:
    http, _, _ = server
    assert ask("http", http, "/hostname")["answer"] == "pod-x"
    assert ask("http", http, "/echo?msg=hello%20there")["answer"] == "hello there"
    assert ask("http", http, "/healthz")["answer"] == "ok"
    ip, port = ask("http", http, "/clientip")["answer"].split(":")
    assert ip == "127.0.0.1" and 0 < int(port) < 65536
    missing = ask("http", http, "/nope")
    assert not missing["ok"] and "404" in missing["error"]


def test_http_keeps_the_connection_as_http_1_1_does(
        server: tuple[int, int, subprocess.Popen[bytes]]) -> None:
    """Two requests on one connection (keep-alive), then `Connection: close` ends it; a
    method other than GET is refused (501), a line that is not a request too (400)."""
    import http.client

    http_port, _, _ = server
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    try:
        for path, body in (("/hostname", b"pod-x"), ("/echo?msg=again", b"again")):
            conn.request("GET", path)
            answer = conn.getresponse()
            assert (answer.status, answer.read(), answer.getheader("Content-Type")) == \
                (200, body, "text/plain")
        conn.request("POST", "/hostname", body=b"")
        refused = conn.getresponse()
        assert refused.status == 501 and refused.read() == b"unsupported method"
        conn.request("GET", "/healthz", headers={"Connection": "close"})
        last = conn.getresponse()
        assert last.status == 200 and last.read() == b"ok" and last.will_close
    finally:
        conn.close()
    with socket.create_connection(("127.0.0.1", http_port), timeout=5) as raw:
        raw.sendall(b"nonsense\r\n\r\n")
        reply = b""
        for _ in range(100):  # until the server closes the connection after the error
            chunk = raw.recv(4096)
            if not chunk:
                break
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n") and reply.endswith(b"bad request")


def test_udp_commands(server: tuple[int, int, subprocess.Popen[bytes]]) -> None:
    _, udp, _ = server
    assert ask("udp", udp, "hostname")["answer"] == "pod-x"
    assert ask("udp", udp, "echo hi")["answer"] == "hi"
    assert ask("udp", udp, "clientip")["answer"].startswith("127.0.0.1:")


def test_probe_counts_and_exit_status(server: tuple[int, int, subprocess.Popen[bytes]],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    http, _, _ = server
    assert probe.main(["http", "127.0.0.1", str(http), "/hostname", "--count", "3",
                       "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["answer"] for r in results] == ["pod-x"] * 3
    closed = free_port(socket.SOCK_STREAM)
    assert probe.main(["tcp", "127.0.0.1", str(closed), "--count", "5", "--fail-fast",
                       "--json"]) == 1
    refused = json.loads(capsys.readouterr().out)
    assert len(refused) == 1 and refused[0]["error"] == "connection refused"


def test_probe_bounds_its_arguments() -> None:
    with pytest.raises(SystemExit) as err:
        probe.main(["http", "127.0.0.1", "80", "--count", "100000"])
    assert err.value.code == 2


def test_sigterm_drains_sigint_stops() -> None:
    """SIGTERM: the server keeps answering (a draining server: the pod's grace period
    ends it with SIGKILL); SIGINT (a person at a terminal) stops it."""
    http, udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen([sys.executable, "-m", "generator.node.testserver", "--name", "t",
                             "--host", "127.0.0.1", "--http-port", str(http), "--udp-port",
                             str(udp)], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not ask("http", http, "/healthz")["ok"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert proc.poll() is None, "SIGTERM ended the server"
        assert ask("http", http, "/hostname")["answer"] == "t"
        assert ask("udp", udp, "hostname")["answer"] == "t"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
    finally:
        proc.kill()
        proc.wait()


# ---- batches: many probes in one process


def test_batch_stops_once_every_wanted_answer_is_seen(
        server: tuple[int, int, subprocess.Popen[bytes]]) -> None:
    http, udp, _ = server
    jobs = [{"netns": None, "mode": "http", "host": "127.0.0.1", "port": http, "arg": "/hostname",
             "count": 50, "timeout": 2.0, "until": ["pod-x"]},
            {"netns": None, "mode": "udp", "host": "127.0.0.1", "port": udp, "arg": "hostname",
             "count": 3, "timeout": 2.0, "until": None}]
    first, second = probe.run_batch(jobs, 30.0, 4)
    assert first["sent"] == 1 and first["answers"] == {"pod-x": 1}
    assert second["sent"] == second["ok"] == 3 and second["answers"] == {"pod-x": 3}


def test_batch_fails_fast_and_keeps_the_error(server: tuple[int, int, subprocess.Popen[bytes]],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    closed = free_port(socket.SOCK_STREAM)
    jobs = [{"mode": "tcp", "host": "127.0.0.1", "port": closed, "count": 10, "timeout": 1.0}]
    assert probe.main(["batch", encode_probe_jobs(jobs), "--deadline", "10"]) == 0
    [summary] = json.loads(capsys.readouterr().out)
    assert summary["sent"] == 1 and summary["ok"] == 0
    assert summary["errors"] == {"connection refused": 1}


def test_batch_sends_nothing_outside_the_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(probe, "attempt", lambda mode, host, *a: sent.append(host))
    for host in ("8.8.8.8", "192.0.2.1", "224.0.0.1", "example.com", "::1"):
        [summary] = probe.run_batch([{"mode": "http", "host": host, "port": 80}], 5.0, 1)
        assert summary["sent"] == 0 and "not a lab address" in next(iter(summary["errors"]))
    assert sent == []
    assert all(probe.allowed(h) for h in ("10.244.0.2", "172.31.0.3", "192.168.1.1",
                                          "100.64.0.1", "127.0.0.1"))


def test_batch_reports_a_missing_netns() -> None:
    [summary] = probe.run_batch([{"netns": "no-such-pod-kgen", "mode": "http",
                                  "host": "127.0.0.1", "port": 1}], 5.0, 1)
    assert summary["sent"] == 0 and summary["errors"]


def test_batch_streams_never_send_more_than_count(
        server: tuple[int, int, subprocess.Popen[bytes]]) -> None:
    http, _, _ = server
    base = {"mode": "http", "host": "127.0.0.1", "port": http, "arg": "/hostname", "streams": 4}
    plain, early = probe.run_batch([{**base, "count": 10},
                                    {**base, "count": 10, "until": ["pod-x"]}], 30.0, 2)
    assert plain["sent"] == plain["ok"] == 10 and plain["answers"] == {"pod-x": 10}
    # Stopped once pod-x answered: at most the requests already in flight besides it.
    assert 1 <= early["sent"] <= 4 and early["errors"] == {}


@pytest.mark.netns
def test_batch_probes_from_inside_a_named_netns() -> None:
    """Every stream of a job enters the job's netns: a server only there answers them all,
    while the same address from the host's own namespace is refused."""
    need_root_netns()
    name = f"kgt-probe-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        port = 18080
        while probe.attempt("tcp", "127.0.0.1", port, "", 0.5)["ok"]:
            port += 1  # taken in the host's namespace: find one refused there
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-m",
                                   "generator.node.testserver", "--name", "inside", "--host",
                                   "127.0.0.1", "--http-port", str(port), "--udp-port",
                                   str(port + 1)], cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            job = {"netns": name, "mode": "http", "host": "127.0.0.1", "port": port,
                   "arg": "/hostname", "count": 12, "streams": 4, "timeout": 2.0}
            deadline = time.monotonic() + 10
            while not probe.run_batch([{**job, "count": 1}], 5.0, 1)[0]["ok"]:
                assert time.monotonic() < deadline, "test server did not start"
                time.sleep(0.05)
            inside, outside = probe.run_batch([job, {**job, "netns": None, "count": 1}], 10.0, 2)
            assert inside["sent"] == inside["ok"] == 12 and inside["answers"] == {"inside": 12}
            assert outside["errors"] == {"connection refused": 1}
        finally:
            server.send_signal(signal.SIGINT)  # SIGTERM only drains it
            server.wait(5)
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_the_http_server_binds_without_asking_the_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod's resolver (kube-dns) has no rules while the lab comes up: binding must not
    wait on a name lookup (http.server's own server_bind asks socket.getfqdn)."""
    from generator.node import testserver

    def no_resolver(*_: object) -> str:
        raise AssertionError("the test server asked the resolver while binding")

    monkeypatch.setattr(socket, "getfqdn", no_resolver)
    server = testserver.HTTPServer(("127.0.0.1", 0), testserver.make_http_handler("p"))
    try:
        assert server.server_name == "127.0.0.1" and server.server_port > 0
    finally:
        server.server_close()
