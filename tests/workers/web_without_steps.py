"""Run a web example with the step code made unimportable, to prove it never needs it.

Usage: python web_without_steps.py -m MODULE [ARGS...]   (as ``python -m MODULE ARGS``)
       python web_without_steps.py SCRIPT.py [ARGS...]   (as ``python SCRIPT.py ARGS``)

``sys.modules["examples.orders"] = None`` makes every import of ``examples.orders`` and of
``examples.orders.workflows`` raise ImportError, so a web app that imported the workflows (and
so the step code) would fail to start, or fail its requests.
"""

from __future__ import annotations

import runpy
import sys

if __name__ == "__main__":
    sys.modules["examples.orders"] = None  # type: ignore[assignment]
    sys.modules["examples.orders.workflows"] = None  # type: ignore[assignment]
    if sys.argv[1] == "-m":
        sys.argv = [sys.argv[2], *sys.argv[3:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
