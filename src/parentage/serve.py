"""`parentage serve`: a warm worker for pipelines that run many short commands (upload checks, identify).

A command in a fresh process pays the interpreter, numpy and our modules before it reads a byte: about 0.3 s,
most of a tiny pair's wall time. The server imports all that once and forks a worker per command (the design of
Mercurial's chg and Android's zygote). The client is the `parentage` command itself, unchanged for the user: it
connects to the server's Unix socket, hands over its standard streams (SCM_RIGHTS), working folder, environment
and arguments, and exits with the worker's status. The worker runs the same code a fresh process would, on the
client's streams, folder and environment, so output, exit status and files written are the same; a worker that
crashes or hogs memory cannot take the server with it, and a client that goes away (Ctrl-C, a killed pipeline)
takes its worker with it.

Which server: PARENTAGE_SERVE (a socket path), else serve.sock in the cache folder, when one answers there;
PARENTAGE_SERVE=off runs every command in its own process. A server answers only its own user (SO_PEERCRED,
and a folder only they can enter) and declines, so that the client runs the command itself, a client of another
parentage install or with other settings that take effect when libraries load (thread counts, locale).

This module imports only the standard library at the top: the client's start-up is the point.

Wire format, both ways: b"PGS1", a 4-byte big-endian length, then that many bytes of JSON. The client's first
frame carries its stdin, stdout and stderr as SCM_RIGHTS; the server answers once, {"exit": status} when the
worker ends, or {"declined": why}, or {"error": why} for a request it cannot read.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys

MAGIC = b"PGS1"
HEADER = struct.Struct(">4sI")
# Read when a library loads, so a worker forked from the server cannot take the client's value: a client whose
# value differs is declined and runs the command in its own process.
LOAD_TIME_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                 "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONHASHSEED", "PYTHONWARNINGS", "LC_ALL", "LC_CTYPE", "LANG")
# Imported once by the server, before it forks a worker: what `compare`, `identify` and `inspect` need.
WARM_MODULES = ("parentage.cli", "parentage.api", "parentage.pair", "parentage.index.identify", "parentage.index.store",
                "parentage.inspection", "parentage.report.jsondoc", "parentage.report.terminal",
                "parentage.report.tables", "parentage.report.index", "parentage.readers.safetensors",
                "parentage.readers.gguf", "parentage.readers.quantization", "numpy.random", "numpy.ma")


def _frame(doc: dict) -> bytes:
    body = json.dumps(doc).encode()
    return HEADER.pack(MAGIC, len(body)) + body


def _identity() -> dict:
    """What a client and its server must share: the same install and the same load-time settings."""
    import parentage

    return {"version": parentage.__version__, "package": os.path.realpath(os.path.dirname(parentage.__file__)),
            "executable": os.path.realpath(sys.executable),
            "load_env": {k: os.environ.get(k) for k in LOAD_TIME_ENV}}


# -- the client: `parentage ...` when a server answers ------------------------------------------------------------


def forward(argv: list[str]) -> int | None:
    """Run the command `argv` on the server, if one answers: its exit status, or None when there is no server
    (or it declined), so the caller runs the command itself."""
    if not hasattr(socket, "AF_UNIX") or not hasattr(socket, "send_fds") or (argv and argv[0] == "serve"):
        return None
    from .constants import serve_socket

    path = serve_socket()
    if path is None or not path.exists():  # the common case costs one stat
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        sock.connect(str(path))
        sock.settimeout(None)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        request = _frame({"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ), **_identity()})
        socket.send_fds(sock, [request[:HEADER.size]], [0, 1, 2])
        sock.sendall(request[HEADER.size:])
    except OSError:  # no server there (a stale socket), or it went away: run the command here
        sock.close()
        return None
    try:
        reply = _read_reply(sock)
    except KeyboardInterrupt:  # the server sees the connection close and stops the worker
        return 130
    finally:
        sock.close()
    if reply is None:
        print(f"parentage: error: {path}: the server closed the connection before the command finished "
              "(stopped or killed); run the command again", file=sys.stderr)
        return 1
    if "exit" in reply:
        if reply.get("signal"):
            print(f"parentage: internal error: the server's worker for this command died (signal "
                  f"{reply['signal']}); rerun with PARENTAGE_SERVE=off to run it in its own process",
                  file=sys.stderr)
        return int(reply["exit"])
    return None  # declined (another install, other load-time settings): run it here


def _read_reply(sock: socket.socket) -> dict | None:
    head = _recv_exact(sock, HEADER.size)
    if head is None:
        return None
    magic, n = HEADER.unpack(head)
    body = _recv_exact(sock, n) if magic == MAGIC and n <= 1 << 16 else None
    try:
        doc = json.loads(body) if body is not None else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def stop(path) -> int:
    """Ask the server at `path` to stop once its running commands end: how many were running."""
    from .errors import ServeError

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0)
        sock.connect(str(path))
        sock.sendall(_frame({"stop": True}))
        reply = _read_reply(sock)
    except OSError as e:
        raise ServeError(path, f"no server answers there ({e.strerror or e})") from None
    finally:
        sock.close()
    if not reply or "stopping" not in reply:
        raise ServeError(path, f"the server did not agree to stop: {reply}")
    return int(reply["stopping"])


# -- the server ---------------------------------------------------------------------------------------------------


class _Client:
    """One connection: its request as it arrives, then its worker."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []
        self.deadline = deadline  # for the whole request
        self.request: dict | None = None
        self.pid: int | None = None
        self.stop_sent: float | None = None  # when its worker was asked to stop
        self.gone = False  # the client closed its end: no answer is sent
        self.watched = True  # in the server's selector

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.sock.close()


def serve_forever(path, workers: int) -> None:
    """Listen at `path` until stopped (`parentage serve --stop`, SIGTERM or Ctrl-C), one forked worker per
    command, at most `workers` at once (the rest wait their turn)."""
    import importlib
    import signal
    import time

    from .constants import SERVE_STOP_GRACE

    _check_free(path)
    for name in WARM_MODULES:  # the point of the server: paid once, inherited by every worker
        importlib.import_module(name)
    me = _identity()
    listener = _listen(path)
    server = _Server(listener, path, me, workers)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd hears of it
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "signalled", True))
    signal.signal(signal.SIGINT, lambda *_: setattr(server, "signalled", True))
    print(f"parentage: serving on {path} (pid {os.getpid()}, {workers} commands at once); every `parentage` "
          f"command that finds this socket runs here; stop with `parentage serve --stop` or Ctrl-C",
          file=sys.stderr, flush=True)
    try:
        server.loop(time.monotonic, SERVE_STOP_GRACE)
    finally:
        server.close()


def _check_free(path) -> None:
    """Refuse a path where a server answers or that is something else; clear a stale socket."""
    import stat

    from .errors import ServeError

    if len(os.fsencode(str(path))) > 100:  # sun_path holds 104-108 bytes
        raise ServeError(path, "too long for a Unix socket path (over 100 bytes); give a shorter --socket")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ServeError(path, "exists and is not a socket; give another --socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:  # nobody listens: a server that died left it
        os.unlink(path)
        return
    finally:
        probe.close()
    raise ServeError(path, "a server already answers there (stop it with `parentage serve --stop`)")


def _listen(path) -> socket.socket:
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is the owner's only from the moment it exists
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    listener.listen(128)
    listener.setblocking(False)
    return listener


class _Server:
    """The accept-and-fork loop: one thread, a selector over the listening socket, every open connection (a
    request arriving, or a client waiting for its command, whose going away stops the worker), and a wake-up
    socket that signals write to (a worker ended; stop)."""

    def __init__(self, listener: socket.socket, path, me: dict, workers: int):
        import collections
        import selectors
        import signal

        self.listener, self.path, self.me, self.workers = listener, path, me, workers
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        for s in (self.wake_r, self.wake_w):
            s.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        self.sel.register(listener, selectors.EVENT_READ, None)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.clients: set[_Client] = set()  # every open connection
        self.queue: collections.deque[_Client] = collections.deque()  # requests waiting for a worker
        self.running: dict[int, _Client] = {}  # worker pid -> its client
        self.listening = True
        self.signalled = False  # SIGTERM or Ctrl-C: set by the handler, acted on by the loop
        self.kill = False  # running workers are asked to stop too

    def loop(self, now, grace: float) -> None:
        from .constants import SERVE_REQUEST_SECONDS

        while self.listening or self.running or self.queue:
            waits = [c.deadline for c in self.clients if c.request is None]
            waits += [c.stop_sent + grace for c in self.running.values() if c.stop_sent is not None]
            timeout = max(0.0, min(waits) - now()) if waits else None
            for key, _ in self.sel.select(0.0 if self.signalled and self.listening else timeout):
                if key.data is None:
                    self._accept(now() + SERVE_REQUEST_SECONDS)
                elif key.data == "wake":
                    _drain(self.wake_r)
                else:
                    self._readable(key.data, now())
            if self.signalled:  # SIGTERM or Ctrl-C arrived (the wake-up socket ended the wait)
                self.stop(kill=True)
            self._reap()
            t = now()
            for c in [c for c in self.clients if c.request is None and t > c.deadline]:
                self._answer(c, {"error": f"the request did not arrive whole within {SERVE_REQUEST_SECONDS:g} s"})
            for c in self.running.values():
                if self.kill:
                    self._stop_worker(c, t)
                elif c.stop_sent is not None and t > c.stop_sent + grace:
                    _signal(c.pid, "SIGKILL")
            while self.kill and self.queue:
                self._answer(self.queue.popleft(), {"error": "the server stopped before the command ran"})
            while self.queue and len(self.running) < self.workers:
                self._start(self.queue.popleft())

    def stop(self, kill: bool) -> None:
        """Stop listening (the socket file goes at once, so new commands run in their own process); `kill`:
        ask running workers to stop too, else let them and the queue finish."""
        self.kill = self.kill or kill
        if self.listening:
            self.listening = False
            self.sel.unregister(self.listener)
            self.listener.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        import signal

        self.stop(kill=True)
        for pid in list(self.running):
            _signal(pid, "SIGKILL")
            os.waitpid(pid, 0)
        for c in list(self.clients):
            c.close()
        signal.set_wakeup_fd(-1)
        self.wake_r.close()
        self.wake_w.close()
        self.sel.close()

    # -- connections

    def _accept(self, deadline: float) -> None:
        import selectors

        while self.listening:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            c = _Client(sock, deadline)
            self.clients.add(c)
            self.sel.register(sock, selectors.EVENT_READ, c)
            if not _same_user(sock):
                self._answer(c, {"error": "this server answers only the user who started it"})
            else:
                sock.setblocking(False)

    def _readable(self, c: _Client, t: float) -> None:
        from .constants import SERVE_MAX_REQUEST

        try:
            data, fds, _, _ = socket.recv_fds(c.sock, 65536, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b"", []
        if c.request is not None:  # a client says nothing after its request: this is it going away
            for fd in fds:
                os.close(fd)
            if not data:
                self._gone(c, t)
            return
        c.fds += fds
        if not data:
            return self._answer(c, {"error": "the connection closed before the request was whole"})
        c.buf += data
        if len(c.fds) > 3:
            return self._answer(c, {"error": "more than three file descriptors sent"})
        if len(c.buf) < HEADER.size:
            return
        magic, n = HEADER.unpack(c.buf[:HEADER.size])
        if magic != MAGIC:
            return self._answer(c, {"error": "not a parentage client (bad magic)"})
        if n > SERVE_MAX_REQUEST:
            return self._answer(c, {"error": f"request of {n:,} bytes, over the {SERVE_MAX_REQUEST:,} allowed"})
        if len(c.buf) < HEADER.size + n:
            return
        if len(c.buf) > HEADER.size + n:
            return self._answer(c, {"error": "bytes after the request"})
        try:
            doc = json.loads(c.buf[HEADER.size:])
        except ValueError as e:
            return self._answer(c, {"error": f"the request is not JSON ({e})"})
        self._request(c, doc)

    def _request(self, c: _Client, doc) -> None:
        if isinstance(doc, dict) and doc.get("stop") is True:
            self._answer(c, {"stopping": len(self.running) + len(self.queue)})
            self.stop(kill=False)
            return
        problem = _invalid(doc, len(c.fds))
        if problem:
            return self._answer(c, {"error": problem})
        differs = [k for k in ("version", "package", "executable") if doc[k] != self.me[k]]
        differs += [k for k in LOAD_TIME_ENV if doc["load_env"].get(k) != self.me["load_env"][k]]
        if differs or (doc["argv"] and doc["argv"][0] == "serve"):
            return self._answer(c, {"declined": "differs from the server in " + ", ".join(differs or ["command"])})
        c.request = doc
        self.queue.append(c)

    def _gone(self, c: _Client, t: float) -> None:
        """The client closed its end (Ctrl-C, killed): its command is dropped or its worker stopped."""
        c.gone = True
        if c in self.queue:
            self.queue.remove(c)
            self._answer(c, {})
        elif c.pid is not None:
            self._stop_worker(c, t)
            self.sel.unregister(c.sock)  # the answer, when the worker ends, goes nowhere
            c.watched = False

    def _answer(self, c: _Client, doc: dict) -> None:
        """The one answer a client gets; the connection closes after it."""
        if c in self.clients:
            self.clients.discard(c)
            if c.watched:
                self.sel.unregister(c.sock)
                c.watched = False
            if not c.gone:
                try:
                    c.sock.setblocking(True)
                    c.sock.settimeout(1.0)
                    c.sock.sendall(_frame(doc))
                except OSError:
                    pass
        c.close()

    # -- workers

    def _start(self, c: _Client) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = self._worker(c)
            except BaseException as e:  # noqa: BLE001 - on the client's stderr once its streams are in place
                os.write(2, f"parentage: internal error in the server's worker: {type(e).__name__}: {e}\n".encode())
            finally:
                os._exit(code)
        for fd in c.fds:  # the worker holds the client's streams now
            os.close(fd)
        c.fds = []
        c.pid = pid
        self.running[pid] = c

    def _worker(self, c: _Client) -> int:
        import signal

        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _terminated)
        for other in self.clients:
            other.sock.close()
            if other is not c:
                for fd in other.fds:
                    os.close(fd)
        if self.listening:
            self.listener.close()
        for s in (self.wake_r, self.wake_w):
            s.close()
        self.sel.close()
        return run_request(c.request, c.fds)

    def _stop_worker(self, c: _Client, t: float) -> None:
        if c.stop_sent is None:
            c.stop_sent = t
            _signal(c.pid, "SIGTERM")

    def _reap(self) -> None:
        while self.running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            c = self.running.pop(pid, None)
            if c is not None:
                code = os.waitstatus_to_exitcode(status)
                self._answer(c, {"exit": code} if code >= 0 else {"exit": 1, "signal": -code})


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            if not sock.recv(4096):
                return
        except (BlockingIOError, InterruptedError):
            return


def _signal(pid: int, name: str) -> None:
    import signal

    try:
        os.kill(pid, getattr(signal, name))
    except ProcessLookupError:
        pass


def _terminated(signum, frame):
    """A worker asked to stop unwinds like Ctrl-C, so `finally` blocks remove what it was writing."""
    raise KeyboardInterrupt


def _same_user(sock: socket.socket) -> bool:
    if not hasattr(socket, "SO_PEERCRED"):  # elsewhere the socket's mode (0600) keeps other users out
        return True
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


def _invalid(doc, n_fds: int) -> str | None:
    """Why a command request is malformed, or None. Checked once here: the worker trusts what passed."""
    if not isinstance(doc, dict):
        return "the request is not a JSON object"
    shapes = {"argv": list, "cwd": str, "env": dict, "version": str, "package": str, "executable": str,
              "load_env": dict}
    for key, kind in shapes.items():
        if not isinstance(doc.get(key), kind):
            return f"the request's {key!r} is missing or not a {kind.__name__}"
    if not all(isinstance(a, str) for a in doc["argv"]):
        return "the request's argv holds a value that is not a string"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in doc["env"].items()):
        return "the request's env holds a value that is not a string"
    if not all(v is None or isinstance(v, str) for v in doc["load_env"].values()):
        return "the request's load_env holds a value that is not a string"
    if not os.path.isabs(doc["cwd"]) or "\0" in doc["cwd"]:
        return "the request's cwd is not an absolute path"
    if any("\0" in k or "=" in k or "\0" in v for k, v in doc["env"].items()):
        return "the request's env holds a name or value no environment can"
    if n_fds != 3:
        return f"the request carried {n_fds} file descriptors, not the client's stdin, stdout and stderr"
    return None


def run_request(request: dict, fds: list[int]) -> int:
    """In a worker: become the client's process (its streams, folder, environment, arguments) and run the
    command as `parentage` would; the exit status."""
    import io

    encoding = sys.stdout.encoding or "utf-8"
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        if fd > 2:
            os.close(fd)
    sys.stdin = io.open(0, "r", encoding=encoding, closefd=False)
    sys.stdout = io.open(1, "w", buffering=1 if os.isatty(1) else -1, encoding=encoding, closefd=False)
    sys.stderr = io.open(2, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False)
    os.environ.clear()
    os.environ.update(request["env"])
    code = 1
    try:
        os.chdir(request["cwd"])
        sys.argv = ["parentage", *request["argv"]]
        from .cli import cli

        cli.main(args=request["argv"], prog_name="parentage")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except OSError as e:  # the client's folder went away before the command ran
        print(f"parentage: error: {request['cwd']}: {e.strerror or e}", file=sys.stderr)
    except BaseException as e:  # noqa: BLE001 - a worker reports what killed it, never the server
        print(f"parentage: internal error: {type(e).__name__}: {e}", file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # the client's pipe closed
            pass
    return code
