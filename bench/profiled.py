"""Run a server module under cProfile, profiling only between two signals.

``python -m bench.profiled OUT.prof daphne -b 127.0.0.1 ...`` runs ``python -m daphne ...``
in this process; SIGUSR1 starts the profiler, SIGUSR2 stops it and writes OUT.prof. The run
(``BENCH_PROFILE=DIR``, bench/README.md) sends them around the broadcast window, so
connection setup is not in the profile. Only the main thread (the event loop) is profiled."""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
from types import FrameType


def main() -> None:
    """Install the two handlers, then run the module as ``python -m`` would."""
    out, module, *args = sys.argv[1:]
    profiler = cProfile.Profile()

    def start(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
