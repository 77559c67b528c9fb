"""Run a node under cProfile: ``python -m bench.profiled OUT MODULE [ARGS...]`` runs ``python -m
MODULE ARGS...`` and writes the profile to OUT when it stops (SIGTERM included: uvicorn
raises the signal again once it has shut down, which this turns into a normal exit), and the
garbage collections (count and time per generation) to stderr, the node's log. The bench runs
its Django nodes so when ``BENCH_PROFILE`` names a directory (bench/README.md, "Profiling a
node")."""

from __future__ import annotations

import cProfile
import gc
import runpy
import signal
import sys
import time
from typing import Any


def main() -> None:
    """Run the module named on the command line under cProfile."""
    out, module, *args = sys.argv[1:]
    started = [0.0]
    seconds = [0.0, 0.0, 0.0]  # per generation
    counts = [0, 0, 0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            seconds[info["generation"]] += time.perf_counter() - started[0]
            counts[info["generation"]] += 1

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    gc.callbacks.append(on_gc)
    sys.argv = [module, *args]
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)
        spent = ", ".join(f"gen {g}: {counts[g]} in {seconds[g]:.3f} s" for g in range(3))
        print(f"bench.profiled: garbage collections {spent}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
