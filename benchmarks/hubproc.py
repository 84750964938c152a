"""The loopback hub in its own process, for benchmarks: the client's peak RSS and CPU then are its own.

    hub = HubProcess([__file__, "serve", ...])   # the script prints the hub's URL as its first line
    hub.counters()                                # what the hub has served so far
    hub.stop()
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request


class HubProcess:
    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.stop()
            raise SystemExit(f"the hub did not start: {' '.join(argv)}")

    def counters(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/_emulator/counters") as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
