"""Run a node under cProfile: ``python -m bench.profiled OUT MODULE [ARGS...]`` runs ``python -m
MODULE ARGS...`` in this process with the profiler on from the start. The broadcast scenario
sends SIGUSR1 when its publishing starts (what was profiled so far, the start-up and the
connect phase, is written to ``<OUT without .prof>-setup.prof`` and profiling starts again)
and SIGUSR2 when its clients are done (the broadcast window is written to OUT and profiling
stops). A node that gets neither (the storm scenario) writes its whole life to OUT when it
stops, SIGTERM included: uvicorn raises the signal again once it has shut down, which this
turns into a normal exit. The garbage collections (count and time per generation) go to
stderr, the node's log. Only the main thread (the event loop's) is profiled. The bench runs
its Django nodes so when ``BENCH_PROFILE`` names a directory (bench/README.md, "Profiling a
node")."""

from __future__ import annotations

import cProfile
import gc
import runpy
import signal
import sys
import time
from pathlib import Path
from typing import Any


class _Window:
    """The profiler of the current window and whether OUT was written."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.profiler = cProfile.Profile()
        self.written = False

    def restart(self, *_: Any) -> None:
        self.profiler.disable()
        self.profiler.dump_stats(str(Path(self.out).with_suffix("")) + "-setup.prof")
        self.profiler = cProfile.Profile()
        self.profiler.enable()

    def stop(self, *_: Any) -> None:
        self.profiler.disable()
        if not self.written:
            self.profiler.dump_stats(self.out)
            self.written = True


def main() -> None:
    """Run the module named on the command line under cProfile."""
    out, module, *args = sys.argv[1:]
    window = _Window(out)
    started = [0.0]
    seconds = [0.0, 0.0, 0.0]  # per generation
    counts = [0, 0, 0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            seconds[info["generation"]] += time.perf_counter() - started[0]
            counts[info["generation"]] += 1

    def exit_now(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_now)
    signal.signal(signal.SIGUSR1, window.restart)
    signal.signal(signal.SIGUSR2, window.stop)
    gc.callbacks.append(on_gc)
    sys.argv = [module, *args]
    window.profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        window.stop()
        spent = ", ".join(f"gen {g}: {counts[g]} in {seconds[g]:.3f} s" for g in range(3))
        print(f"bench.profiled: garbage collections {spent}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
