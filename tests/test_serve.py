"""`parentage serve`: a real server process on a Unix socket, real clients (the `parentage` command), and raw
sockets for what a broken or hostile client sends."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from parentage.synthetic import Shape, write_model

pytestmark = pytest.mark.skipif(not hasattr(socket, "send_fds") or not hasattr(os, "fork"),
                                reason="serve needs fork and Unix sockets")

ENTRY = "import sys; from parentage.entry import main; sys.argv[0] = 'parentage'; main()"


def _cmd(*args) -> list[str]:
    """The `parentage` command as its console script runs it (entry.main), in a fresh interpreter."""
    return [sys.executable, "-c", ENTRY, *map(str, args)]


class Server:
    def __init__(self, env: dict, workers: int = 2):
        self.dir = tempfile.mkdtemp(prefix="ps", dir="/tmp")  # a Unix socket path must stay short
        self.path = Path(self.dir) / "s.sock"
        self.env = {**env, "PARENTAGE_SERVE": str(self.path)}
        self.proc = subprocess.Popen(_cmd("serve", "--workers", workers), env=self.env, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stderr.readline()
        assert "serving on" in line, line + self.proc.stderr.read()

    def run(self, *args, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(_cmd(*args), env=env or self.env, capture_output=True, text=True, timeout=120, **kw)

    def children(self) -> list[int]:
        """The server's live workers (Linux: the kernel's list of a task's children)."""
        text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(p) for p in text.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc.stderr.close()


@pytest.fixture
def server():
    s = Server(dict(os.environ))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    shape = Shape(n_layers=4, hidden=64, n_heads=4, n_kv_heads=2, ffn=192, vocab=384)
    return [str(write_model(root / name, "llama", shape, seed=seed)) for name, seed in (("a", 1), ("b", 1), ("c", 2))]


def _without_time(doc: dict) -> dict:
    doc["cost"].pop("seconds", None)
    return doc


def _raw(path: Path, payload: bytes, fds: list[int] | None = None) -> dict | None:
    """Send raw bytes as a client would (with fds), and read the server's one answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        if fds:
            socket.send_fds(s, [payload[:8]], fds)
            s.sendall(payload[8:])
        else:
            s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data:
        return None
    magic, n = struct.unpack(">4sI", data[:8])
    assert magic == b"PGS1"
    return json.loads(data[8:8 + n])


def _frame(doc) -> bytes:
    body = json.dumps(doc).encode()
    return struct.pack(">4sI", b"PGS1", len(body)) + body


def test_a_served_compare_gives_the_same_document_and_status_as_a_fresh_process(server, pair):
    served = server.run("compare", pair[0], pair[2], "--format", "json")
    alone = server.run("compare", pair[0], pair[2], "--format", "json", env={**server.env, "PARENTAGE_SERVE": "off"})
    assert served.returncode == alone.returncode == 0, served.stderr + alone.stderr
    assert _without_time(json.loads(served.stdout)) == _without_time(json.loads(alone.stdout))
    assert json.loads(served.stdout)["verdict"]["label"] == "unrelated"


def test_a_served_command_costs_the_client_no_numpy(server, pair):
    """The point of serving: the client process imports neither numpy nor click nor our test modules."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", ENTRY, "compare", pair[0], pair[1]],
                          env=server.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("RELATED"), proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "parentage.serve" in imported
    assert not {"numpy", "click", "parentage.pair"} & imported


def test_bad_input_keeps_its_one_error_line_and_exit_status_when_served(server, pair, tmp_path):
    missing = tmp_path / "missing"
    proc = server.run("compare", pair[0], missing)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"parentage: error: {missing}: no such file or folder"]
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(Path(pair[0], "model.safetensors").read_bytes()[:100])
    proc = server.run("inspect", truncated)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"parentage: error: {truncated}: ")
    assert server.run("compare", pair[0]).returncode == 2  # usage error
    gate = server.run("compare", pair[0], pair[1], "--fail-on", "related")
    assert gate.returncode == 3


def test_relative_paths_and_environment_are_the_clients(server, pair, tmp_path):
    """The worker runs in the client's folder, with its environment (here: where the index lives)."""
    db = tmp_path / "team.sqlite"
    env = {**server.env, "PARENTAGE_INDEX": str(db)}
    folder = Path(pair[0]).parent
    added = server.run("index", "add", "a", "c", env=env, cwd=folder)
    assert added.returncode == 0, added.stderr
    assert db.exists()
    listed = server.run("index", "list", "--format", "json", env=env, cwd=tmp_path)
    assert len(json.loads(listed.stdout)) == 2


def test_identify_is_served_and_names_the_parent(server, pair, tmp_path):
    db = str(tmp_path / "i.sqlite")
    assert server.run("index", "add", pair[0], pair[2], "--db", db).returncode == 0
    served = server.run("identify", pair[1], "--db", db, "--format", "json")
    alone = server.run("identify", pair[1], "--db", db, "--format", "json",
                       env={**server.env, "PARENTAGE_SERVE": "off"})
    assert served.returncode == alone.returncode == 0, served.stderr
    a, b = json.loads(served.stdout), json.loads(alone.stdout)
    assert a["candidates"][0]["ref"] == b["candidates"][0]["ref"] == pair[0]
    assert [c["ref"] for c in a["candidates"]] == [c["ref"] for c in b["candidates"]]


def test_concurrent_clients_all_get_their_own_answer(pair):
    s = Server(dict(os.environ), workers=2)
    try:
        jobs = [(pair[0], pair[i % 2 + 1]) for i in range(6)]  # more clients than workers: some wait their turn
        procs = [subprocess.Popen(_cmd("compare", a, b, "--format", "json"), env=s.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for a, b in jobs]
        outs = [p.communicate(timeout=120) for p in procs]
        for (a, b), p, (out, err) in zip(jobs, procs, outs):
            assert p.returncode == 0, err
            doc = json.loads(out)
            assert [i["ref"] for i in doc["inputs"]] == [a, b]
            assert doc["verdict"]["label"] == ("related" if b == pair[1] else "unrelated")
    finally:
        s.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the server's children from /proc")
def test_a_client_that_goes_away_mid_command_takes_its_worker_with_it(server):
    """The command hangs (a host that takes the connection and never answers: a stalled hub); killing the
    client stops the worker, and the server goes on serving."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(8)  # connections complete in the backlog; no answer ever comes
        url = f"http://127.0.0.1:{stalled.getsockname()[1]}/model.safetensors"
        env = {k: v for k, v in server.env.items() if k != "HF_HUB_OFFLINE"}
        client = subprocess.Popen(_cmd("inspect", url), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not server.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.children(), "the command never reached a worker"
        time.sleep(0.5)
        assert client.poll() is None, client.communicate()  # still waiting on the stalled host
        client.kill()
        client.wait()
        while server.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.children() == []
    assert server.run("--version").stdout.startswith("parentage")


def test_bad_requests_get_an_error_and_do_not_stop_the_server(server, pair):
    fds = [0, 1, 2]
    good = {"argv": ["--version"], "cwd": "/", "env": {}, "version": "0", "package": "", "executable": "",
            "load_env": {}}
    cases = [
        (b"GET / HTTP/1.1\r\n\r\n", None, "bad magic"),
        (struct.pack(">4sI", b"PGS1", 1 << 30), None, "over the"),
        (struct.pack(">4sI", b"PGS1", 5) + b"{nope", fds, "not JSON"),
        (_frame([1, 2]), fds, "not a JSON object"),
        (_frame({**good, "argv": "--version"}), fds, "'argv'"),
        (_frame({**good, "argv": [1]}), fds, "not a string"),
        (_frame({**good, "cwd": "relative"}), fds, "absolute"),
        (_frame(good), None, "file descriptors"),
        (_frame({**good, "env": {"A=B": "x"}}), fds, "no environment can"),
    ]
    for payload, with_fds, expected in cases:
        answer = _raw(server.path, payload, with_fds)
        assert answer is not None and expected in answer.get("error", ""), (payload[:40], answer)
    # a request from another install is declined, not run: the client then runs the command itself
    assert "declined" in _raw(server.path, _frame(good), fds)
    assert server.run("compare", pair[0], pair[1]).stdout.startswith("RELATED")


def test_a_silent_client_does_not_hold_up_others(server, pair):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.connect(str(server.path))
        idle.sendall(b"PGS1")  # half a header, then nothing
        t0 = time.monotonic()
        proc = server.run("--version")
        assert proc.returncode == 0 and time.monotonic() - t0 < 5


def test_a_client_with_other_load_time_settings_runs_the_command_itself(server, pair):
    probe = "import sys; from parentage.serve import forward; print(forward(['--version']))"
    env = {**server.env, "OPENBLAS_NUM_THREADS": "1" if os.environ.get("OPENBLAS_NUM_THREADS") != "1" else "2"}
    declined = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert declined.stdout.strip().splitlines()[-1] == "None"  # not served
    served = subprocess.run([sys.executable, "-c", probe], env=server.env, capture_output=True, text=True, timeout=60)
    assert served.stdout.strip().splitlines()[-1] == "0"
    assert server.run("compare", pair[0], pair[1], env=env).stdout.startswith("RELATED")  # and still right


def test_stop_and_start(pair):
    s = Server(dict(os.environ))
    again = subprocess.run(_cmd("serve"), env=s.env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "a server already answers there" in again.stderr
    stopped = subprocess.run(_cmd("serve", "--stop"), env=s.env, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert s.proc.wait(timeout=30) == 0 and not s.path.exists()
    s.stop()
    # no server: the command runs in its own process
    assert s.run("compare", pair[0], pair[1]).stdout.startswith("RELATED")
    # a server killed outright leaves its socket: commands still run, and a new server takes the path
    t = Server(dict(os.environ))
    t.proc.kill()
    t.proc.wait()
    assert t.path.exists()
    assert t.run("compare", pair[0], pair[1]).stdout.startswith("RELATED")
    u = Server({k: v for k, v in t.env.items() if k != "PARENTAGE_SERVE"} | {"PARENTAGE_SERVE": str(t.path)})
    try:
        assert u.run("--version").returncode == 0
    finally:
        u.stop()
        t.stop()


def test_a_path_that_is_not_a_socket_is_refused(tmp_path):
    taken = tmp_path / "file"
    taken.write_text("mine")
    proc = subprocess.run(_cmd("serve", "--socket", taken), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"parentage: error: {taken}: exists and is not a socket; give another --socket"
    assert taken.read_text() == "mine"
