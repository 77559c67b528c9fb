"""Child processes of a benchmark run: start them, talk to them in JSON lines, stop them by pid.

Every process started here is recorded, so whatever happens the orchestrator stops exactly the
processes it started, and no others.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
from pathlib import Path
from typing import Any, BinaryIO

from bench._common import REPO_ROOT, raise_fd_limit

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
#: JSON lines from a load-generator worker carry every latency of the run: allow big lines.
STDOUT_LIMIT = 1 << 28


class ChildFailed(RuntimeError):
    """A child process died, or did not say what it should have in time."""


class Child:
    """One started process: its pid, its log file, and its stdin/stdout pipes if any."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.warnings: list[str] = []

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the process has not exited yet."""
        return self.proc.returncode is None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the process's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    async def read_event(self, event: str, timeout: float) -> dict[str, Any]:
        """Wait up to ``timeout`` seconds for the JSON line ``{"event": event, ...}``."""
        if self.proc.stdout is None:
            raise ChildFailed(f"{self.name}: no stdout pipe")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ChildFailed(f"{self.name}: no {event!r} within {timeout:.0f} s")
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            except TimeoutError:
                continue
            if not line:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 5.0)
                raise ChildFailed(
                    f"{self.name} exited (code {self.proc.returncode}) before {event!r}:\n"
                    f"{self.log_tail()}"
                )
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == event:
                return dict(message)
            if message.get("event") == "warning":
                self.warnings.append(str(message.get("detail")))

    async def send_line(self, payload: dict[str, Any]) -> None:
        """Write one JSON line on the process's stdin."""
        if self.proc.stdin is None:
            raise ChildFailed(f"{self.name}: no stdin pipe")
        self.proc.stdin.write(json.dumps(payload).encode() + b"\n")
        await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        """Close stdin: workers take it as the order to exit."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    async def stop(self, grace: float = 3.0) -> None:
        """Stop this process by its pid.

        A process with a stdin pipe first gets its stdin closed (the workers' order to exit) and
        ``grace`` seconds to go; then SIGTERM, and SIGKILL if it is still there after ``grace``.
        A node run under cProfile (``BENCH_PROFILE``) gets 30 s, to write its profile.
        """
        if os.environ.get("BENCH_PROFILE") and self.name.startswith("server"):
            grace = max(grace, 30.0)
        if self.alive() and self.proc.stdin is not None:
            self.close_stdin()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), grace)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 5.0)
        self.close_stdin()


def _child_setup() -> None:
    """Run in each child between fork and exec: what it sets is inherited through exec.

    Raises the fd limit (daphne cannot do it itself) and asks Linux to SIGTERM the child if the
    orchestrator dies without stopping it (killed, or ``timeout`` ran out), so no server outlives
    its run.
    """
    raise_fd_limit()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _open_log(path: Path) -> BinaryIO:
    """Open a child's log file; the child inherits it and the caller closes its own copy."""
    return open(path, "wb")


class Children:
    """Everything one benchmark run started; :meth:`stop_all` stops each of them by pid."""

    def __init__(self, log_dir: Path, base_env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.base_env = base_env
        self.started: list[Child] = []

    async def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        pipes: bool = False,
        cwd: Path | None = None,
    ) -> Child:
        """Start ``argv`` from the repository root (or ``cwd``: the first place Python imports
        from); its output goes to ``<log_dir>/<name>.log``.

        With ``pipes``, stdout and stdin are pipes for JSON lines and only stderr is logged.
        """
        log_path = self.log_dir / f"{name}.log"
        log = _open_log(log_path)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd or REPO_ROOT,
                env={**self.base_env, **(env or {})},
                stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if pipes else log,
                stderr=log,
                limit=STDOUT_LIMIT,
                preexec_fn=_child_setup,
            )
        finally:
            log.close()
        child = Child(name, proc, log_path)
        self.started.append(child)
        return child

    async def stop_all(self) -> None:
        """Stop every process this run started (by pid): servers first, then the rest.

        The servers go first so that they are not kept busy by thousands of disconnects.
        """
        servers = [c for c in self.started if c.name.startswith("server")]
        others = [c for c in self.started if not c.name.startswith("server")]
        await asyncio.gather(*(c.stop() for c in servers))
        await asyncio.gather(*(c.stop() for c in others))
