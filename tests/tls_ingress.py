"""A TLS-terminating TCP proxy in front of a plain gRPC server: what Azure Container Apps' ingress
is to OVMS (OVMS serves plain gRPC; the ingress takes TLS with HTTP/2 and forwards the bytes), so
the app's TLS channel is tested against the real model-server emulator without teaching the
emulator a TLS mode OVMS does not have.

* :func:`make_ca` / :func:`issue` make a self-signed CA and a server certificate it signs
  (``cryptography``), written as PEM files.
* :class:`TlsIngress` listens on 127.0.0.1 with a certificate, negotiates ALPN ``h2`` (gRPC
  refuses a TLS peer without it) and pipes each connection to the upstream address. asyncio does
  the TLS (``StreamWriter.start_tls`` on each accepted connection, memory BIOs), so one SSL object is never used from two threads.
"""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: validity of the test certificates around "now" (wide, so no test depends on the clock)
_VALID = datetime.timedelta(days=2)


@dataclass(frozen=True)
class Issuer:
    """A CA: its certificate (PEM file) and key."""

    cert_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(folder: Path, common_name: str = "ovaas test CA") -> Issuer:
    """A self-signed CA certificate, written to ``folder/<cn>.ca.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _VALID).not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = Path(folder) / f"{common_name.replace(' ', '-')}.ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issuer(path, cert, key)


def issue(ca: Issuer, folder: Path, host: str = "localhost") -> Tuple[Path, Path]:
    """A server certificate for ``host`` (and 127.0.0.1) signed by ``ca``: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _VALID).not_valid_after(now + _VALID)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca.key, hashes.SHA256()))
    stem = f"{host}-{cert.serial_number:x}"
    cert_path, key_path = Path(folder) / f"{stem}.crt.pem", Path(folder) / f"{stem}.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsIngress:
    """TLS on ``127.0.0.1:<port>`` forwarded as plain TCP to ``upstream`` (host, port), in a thread.
    ``handshake_failures`` counts connections whose TLS handshake failed (the client refused), and
    ``refused`` is set at the first."""

    def __init__(self, upstream: Tuple[str, int], cert_path: Path, key_path: Path) -> None:
        self.upstream = upstream
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(str(cert_path), str(key_path))
        self.context.set_alpn_protocols(["h2"])
        self.port = 0
        self.connections = 0
        self.handshake_failures = 0
        self.refused = threading.Event()  # set at the first failed handshake
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._thread: Optional[threading.Thread] = None
        self._tasks: List[asyncio.Task] = []

    def __enter__(self) -> "TlsIngress":
        started = threading.Event()
        errors: List[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, "127.0.0.1", 0))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            self._server.close()
            for task in self._tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="tls-ingress", daemon=True)
        self._thread.start()
        started.wait()
        if errors:
            raise errors[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.append(asyncio.current_task())
        self.connections += 1
        try:
            await writer.start_tls(self.context, ssl_handshake_timeout=10)
        except (ssl.SSLError, OSError, asyncio.TimeoutError):
            self.handshake_failures += 1
            self.refused.set()
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
