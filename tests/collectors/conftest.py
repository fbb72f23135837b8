"""Real peers for collector tests: HTTP(S) servers on 127.0.0.1 and a test-time CA.

`pki` makes a CA and a server certificate for 127.0.0.1 and localhost once per session.
`serve` starts a threaded server whose answers are a script of `Reply` functions (the
last one repeats) and records every request it sees. Servers stop when the test ends;
a reply that hangs waits on the server's `stop` event, so teardown never blocks.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Reply = Callable[["Handler"], None]


@dataclass(frozen=True)
class Pki:
    ca_bundle: Path  # the CA certificate, PEM: what a collector is told to trust
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA made now, and a certificate it signed for 127.0.0.1 and localhost."""
    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("stigwatch test CA"))
        .issuer_name(_name("stigwatch test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pki(
        ca_bundle=_write_pem(
            folder / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM)
        ),
        server_cert=_write_pem(
            folder / "server.pem", server_cert.public_bytes(serialization.Encoding.PEM)
        ),
        server_key=_write_pem(
            folder / "server.key",
            server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
    )


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(
            Seen(self.command, self.path, dict(self.headers.items()), body)
        )
        self.server.next_reply()(self)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests assert on `seen`, not on a log."""

    def send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """Answer with `body`, declaring its length, plus `headers`."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass(eq=False)
class ServerState:
    replies: list[Reply]
    seen: list[Seen] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    bytes_streamed: int = 0


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = state
        if tls is not None:
            # The handshake runs in the handler thread, on first read, so a client
            # that rejects the certificate never stalls the accepting thread.
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        self._lock = threading.Lock()

    @property
    def seen(self) -> list[Seen]:
        return self.state.seen

    def next_reply(self) -> Reply:
        with self._lock:
            replies = self.state.replies
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients here drop connections on purpose (a rejected certificate, a cap)."""


@dataclass(frozen=True)
class Running:
    state: ServerState
    port: int
    scheme: str

    def url(self, host: str = "127.0.0.1", path: str = "/collect") -> str:
        return "%s://%s:%d%s" % (self.scheme, host, self.port, path)

    @property
    def seen(self) -> list[Seen]:
        return self.state.seen


Serve = Callable[..., Running]


@pytest.fixture
def serve(pki: Pki) -> Iterator[Serve]:
    """Start loopback servers: serve(reply, ..., tls=True) -> Running."""
    started: list[tuple[Server, threading.Thread]] = []

    def start(*replies: Reply, tls: bool = True) -> Running:
        context = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(pki.server_cert, pki.server_key)
        state = ServerState(list(replies))
        server = Server(state, context)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        started.append((server, thread))
        return Running(state, server.server_address[1], "https" if tls else "http")

    yield start
    for server, thread in started:
        server.state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# Replies: what a server does with one request.


def answer(
    status: int = 200, body: bytes = b"{}", headers: dict[str, str] | None = None
) -> Reply:
    def reply(handler: Handler) -> None:
        handler.send(
            status, body, {"Content-Type": "application/json", **(headers or {})}
        )

    return reply


def hang(handler: Handler) -> None:
    """Take the request and say nothing until the test ends (at most 10 s)."""
    handler.server.state.stop.wait(10)


def stream(total: int, *, declare_length: bool) -> Reply:
    """Send `total` bytes of JSON-ish filler in 1 MiB writes, counting what went out."""
    chunk = b" " * (1024 * 1024)

    def reply(handler: Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declare_length:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        state = handler.server.state
        try:
            while state.bytes_streamed < total:
                handler.wfile.write(chunk)
                state.bytes_streamed += len(chunk)
        except OSError:
            return  # the client hung up: what the size cap should make it do

    return reply


def drip(interval: float) -> Reply:
    """Send headers, then one byte every `interval` seconds until the test ends."""

    def reply(handler: Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        state = handler.server.state
        try:
            while not state.stop.wait(interval):
                handler.wfile.write(b" ")
                handler.wfile.flush()
        except OSError:
            return

    return reply


def cut(handler: Handler) -> None:
    """Promise 1000 bytes, send 10, then drop the connection."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b'{"schemaV')
    handler.wfile.flush()
    handler.close_connection = True
