"""The `parentage` command: to a running `parentage serve` when one answers (serve.py), else in this process.

Kept apart from cli.py so that a command the server runs costs this process no click, numpy or our modules."""

import sys


def main() -> None:
    from .serve import forward

    status = forward(sys.argv[1:])
    if status is None:
        from .cli import main as run_here

        run_here()
    else:
        sys.exit(status)
