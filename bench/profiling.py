"""Profile a benchmark server over a window chosen from outside: with ``BENCH_PROFILE_FILE`` set
to a file path, the server's ASGI module calls :func:`install_from_env`, and then ``SIGUSR1`` starts
``cProfile`` on the process's main thread (the event loop's) and ``SIGUSR2`` stops it and
writes the stats to that path (``pstats`` format). The idle scenario's ``--idle-profile``
sends both around its window."""

from __future__ import annotations

import cProfile
import os
import pstats
import signal
from pathlib import Path
from typing import Any


def install_from_env() -> None:
    """Install the two signal handlers if ``BENCH_PROFILE_FILE`` names a file; else do nothing."""
    path = os.environ.get("BENCH_PROFILE_FILE")
    if not path:
        return
    profiler = cProfile.Profile()

    def start(*_: Any) -> None:
        profiler.enable()

    def stop(*_: Any) -> None:
        profiler.disable()
        profiler.dump_stats(path)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def summary(path: Path, top: int = 30) -> str:
    """The ``top`` functions of a stats file by their own time, then by cumulative time."""
    import io

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()
