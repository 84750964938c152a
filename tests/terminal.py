"""Running the console script with stderr on a pseudo-terminal, as a person watching it would."""

import os
import pty
import select
import subprocess
import sys


def stderr_on_a_terminal(args: list[str]) -> str:
    """Run the console script with stderr on a pseudo-terminal (stdout piped, as `... > out.json`)."""
    master, slave = pty.openpty()
    exe = os.path.join(os.path.dirname(sys.executable), "parentage")
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None and not select.select([master], [], [], 0.2)[0]:
            break  # exited, and nothing left to read
    proc.wait()
    os.close(master)
    assert proc.returncode == 0
    return seen.decode(errors="replace")
