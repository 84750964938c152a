"""A real PostgreSQL server for the index tests: Debian's postgresql package, a temporary data folder, a port
on loopback. Started once per test session; the tests that need it skip with the reason when it cannot start."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """initdb + pg_ctl start in a temporary folder; as root, the server runs as the `postgres` user."""

    def __init__(self):
        self.initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise RuntimeError("PostgreSQL is not installed (Debian package postgresql: initdb, pg_ctl)")
        self.folder = tempfile.mkdtemp(prefix="parentage-pg-")
        self.data = os.path.join(self.folder, "data")
        self.port = _free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root without runuser: cannot start PostgreSQL as another user")
            shutil.chown(self.folder, "postgres")
            self.prefix = [runuser, "-u", "postgres", "--"]
        self._run([self.initdb, "-D", self.data, "-A", "trust", "-U", "parentage", "--no-sync", "-E", "UTF8"])
        self._run([self.pg_ctl, "-D", self.data, "-l", os.path.join(self.folder, "log"), "-w", "-t", "30", "-o",
                   f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
        self.url = f"postgresql://parentage@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run(self.prefix + cmd, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{os.path.basename(cmd[0])} failed: {(done.stderr or done.stdout).strip()[-300:]}")

    def new_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://parentage@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run([self.pg_ctl, "-D", self.data, "-m", "immediate", "stop"])
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.1)
        shutil.rmtree(self.folder, ignore_errors=True)
