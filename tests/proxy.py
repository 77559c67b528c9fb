"""Debian's nginx in front of the test nodes, configured from docs/deployment.md, and the
self-signed certificate it serves."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NGINX = os.environ.get("RT_NGINX", "/usr/sbin/nginx")

# What nginx's own /etc/nginx/nginx.conf would hold, with every path in ``{dir}``; the
# documented file is included in the http block, as Debian includes conf.d/*.conf. The access
# log names the upstream node of each request.
MAIN_CONFIG = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    {mime_types}
    log_format upstreams '$request_method $uri $status $upstream_addr';
    access_log {dir}/access.log upstreams;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/realtime.conf;
}}
"""


def self_signed_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate for ``host``, valid for a day and signed by its own key; returns the
    certificate's and the key's paths (PEM) in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def trusting(cert_path: Path) -> ssl.SSLContext:
    """A client TLS context that trusts ``cert_path`` alone."""
    return ssl.create_default_context(cafile=str(cert_path))


class Nginx:
    """nginx in the foreground, its prefix, pid file, logs and temporary files in
    ``directory``, serving ``site`` (a file for nginx's http block) on the loopback ports
    it listens on; stopped by pid."""

    def __init__(self, directory: Path, site: str) -> None:
        if not Path(NGINX).exists():
            raise RuntimeError(f"No nginx at {NGINX}: run tests/ensure_nginx.sh.")
        self.directory = directory
        (directory / "realtime.conf").write_text(site)
        mime_types = Path("/etc/nginx/mime.types")
        (directory / "nginx.conf").write_text(
            MAIN_CONFIG.format(
                dir=directory,
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
