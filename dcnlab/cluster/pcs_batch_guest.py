#!/usr/bin/python3 -Es
"""Run many pcs commands with one start-up of pcs: copied to a node and run there.

Reads one JSON argv per line on stdin (without the leading ``pcs``). Imports
``pcs.app`` once, then for each argv forks and runs ``pcs.app.main(argv)``,
pcs's own command-line entry point, in the child: the command is exactly the
one ``pcs ARGV...`` would run, minus Python and pcs starting up again. Under
TCG that start-up is most of every pcs command (``pcs --version`` took 38 s
wall, 22 s CPU on a 3-node fleet sharing 2 host cores).

Each command's stdout and stderr go to stdout between marker lines::

    @@dcnlab-pcs {"begin": 0}
    ...pcs output...
    @@dcnlab-pcs {"end": 0, "exit": 0, "seconds": 1.234}

The first command that fails stops the batch; the script exits 1. Runs on
the node, so it needs only the Python standard library and pcs; it is not
imported by the harness.
"""

import json
import os
import sys
import time
from typing import Any

MARK = "@@dcnlab-pcs "
# Python puts the script's own directory first on sys.path; a pcs.py lying
# next to the script (as in the harness's source tree) must not shadow pcs.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]


def say(record: dict[str, object]) -> None:
    sys.stdout.write(MARK + json.dumps(record) + "\n")
    sys.stdout.flush()


def run(app: Any, argv: list[str]) -> int:
    pid = os.fork()
    if pid == 0:
        os.dup2(1, 2)  # one ordered stream per command
        code = 0
        try:
            app.main(argv)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        # Anything else is a pcs bug: it must end the child here as this step's
        # failure, never unwind into the parent's loop in the child.
        except BaseException as err:  # noqa: BLE001
            sys.stdout.write(f"{type(err).__name__}: {err}\n")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main() -> int:
    from pcs import app  # type: ignore[import-not-found]  # the one start-up of pcs, before any fork

    for index, line in enumerate(sys.stdin):
        argv = json.loads(line)
        say({"begin": index})
        t0 = time.monotonic()
        code = run(app, argv)
        say({"end": index, "exit": code, "seconds": round(time.monotonic() - t0, 3)})
        if code != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
