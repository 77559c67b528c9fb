"""Debian's nginx in front of realtime nodes, configured from docs/deployment.md's documented
blocks: the one generator tests/test_nginx.py, tests/browser/test_drain.py and the benchmark's
``--via nginx`` use, and the foreground nginx process that serves it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from bench._common import REPO_ROOT
from tests.markdown import marked_block  # plain text parsing, no test machinery

NGINX = os.environ.get("RT_NGINX", "/usr/sbin/nginx")
DEPLOYMENT = REPO_ROOT / "docs" / "deployment.md"
#: The site's name in the documented configuration, and the two nodes it lists.
DOCUMENTED_HOST = "shop.example.com"
DOCUMENTED_NODES = ("server 127.0.0.1:8001 ", "server 127.0.0.1:8002 ")

# What nginx's own /etc/nginx/nginx.conf would hold, with every path in ``{dir}``; the
# documented file is included in the http block, as Debian includes conf.d/*.conf. The access
# log names the upstream node of each request.
MAIN_CONFIG = """\
daemon off;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    {mime_types}
    log_format upstreams '$request_method $uri $status $upstream_addr';
    access_log {access_log};
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/realtime.conf;
}}
"""


def documented(name: str) -> str:
    """The code block docs/deployment.md marks ``<!-- deployment: name -->``."""
    return marked_block(DEPLOYMENT.read_text(), f"deployment: {name}")


def fill(template: str, replacements: dict[str, str]) -> str:
    """``template`` with each key replaced, every one of which must occur in it (so that a
    change of the documented configuration's shape is noticed)."""
    for old, new in replacements.items():
        if old not in template:
            raise LookupError(f"docs/deployment.md's nginx block has no {old!r}")
        template = template.replace(old, new)
    return template


def site_config(
    nodes: Sequence[int],
    http: int,
    https: int,
    host: str,
    tls: tuple[Path, Path] | None,
    extra: dict[str, str] | None = None,
) -> str:
    """docs/deployment.md's nginx block for the two nodes on 127.0.0.1 ports ``nodes``: the
    redirecting server on ``http``, the site on ``https`` named ``host``. ``tls`` is the
    certificate's and the key's paths; None serves the site over plain HTTP (its ``listen``
    without ``ssl``, its ``ssl_*`` lines left out: the benchmark's variant). ``extra``: more
    replacements (each must occur)."""
    if len(nodes) != len(DOCUMENTED_NODES):
        raise ValueError(f"the documented upstream has {len(DOCUMENTED_NODES)} nodes")
    replacements = {
        old: f"server 127.0.0.1:{port} " for old, port in zip(DOCUMENTED_NODES, nodes, strict=True)
    }
    replacements["listen 80;"] = f"listen 127.0.0.1:{http};"
    if tls is not None:
        replacements["listen 443 ssl;"] = f"listen 127.0.0.1:{https} ssl;"
        replacements[f"/etc/ssl/certs/{DOCUMENTED_HOST}.pem"] = str(tls[0])
        replacements[f"/etc/ssl/private/{DOCUMENTED_HOST}.key"] = str(tls[1])
    else:
        replacements["listen 443 ssl;"] = f"listen 127.0.0.1:{https};"
    config = fill(documented("nginx"), {**replacements, **(extra or {})})
    config = fill(config, {DOCUMENTED_HOST: host})
    if tls is None:
        config = "\n".join(
            line for line in config.splitlines() if not line.strip().startswith("ssl_")
        )
    return config


class Nginx:
    """nginx in the foreground, its prefix, pid file, logs and temporary files in
    ``directory``, serving ``site`` (a file for nginx's http block) on the loopback ports
    it listens on; stopped by pid. ``workers`` and ``connections`` (per worker) size it;
    ``access_log`` False turns the access log off (the benchmark's load)."""

    def __init__(
        self,
        directory: Path,
        site: str,
        *,
        workers: int = 1,
        connections: int = 1024,
        access_log: bool = True,
    ) -> None:
        if not Path(NGINX).exists():
            raise RuntimeError(f"No nginx at {NGINX}: run tests/ensure_nginx.sh.")
        self.directory = directory
        (directory / "realtime.conf").write_text(site)
        mime_types = Path("/etc/nginx/mime.types")
        (directory / "nginx.conf").write_text(
            MAIN_CONFIG.format(
                dir=directory,
                workers=workers,
                connections=connections,
                nofile=connections * 2 + 64,
                access_log=f"{directory}/access.log upstreams" if access_log else "off",
                mime_types=f"include {mime_types};" if mime_types.exists() else "",
            )
        )
        self.process = subprocess.Popen(
            [
                NGINX,
                "-p",
                str(directory),
                "-c",
                str(directory / "nginx.conf"),
                "-e",
                str(directory / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def pids(self) -> list[int]:
        """The master's pid and its workers'."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid, *map(int, children)]

    def wait_listening(self, port: int) -> None:
        """Return once ``port`` accepts connections; fail with nginx's errors if it exits."""
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.errors()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError as refused:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"nginx does not listen on {port}: {self.errors()}"
                    ) from refused
                time.sleep(0.02)

    def errors(self) -> str:
        log = self.directory / "error.log"
        stderr = self.process.stderr.read() if self.process.poll() is not None else ""
        return (stderr or "") + (log.read_text() if log.exists() else "")

    def access_log(self) -> list[list[str]]:
        """Lines of the access log: method, path, status, upstream address."""
        return [line.split() for line in (self.directory / "access.log").read_text().splitlines()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: nginx's fast shutdown, workers included
            self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
