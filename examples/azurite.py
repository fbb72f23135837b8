"""The demo's Azurite: found healthy, or started to persist under `.azurite/`; stopped.

The demo leaves Azurite running so its findings stay queryable after the command ends,
and records the process id in `.azurite/azurite.pid` so `scripts/demo --stop` can stop
exactly the process it started. Only 127.0.0.1 is ever used.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
BLOB_PORT, QUEUE_PORT, TABLE_PORT = 10000, 10001, 10002
# Azurite's published development account; not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # noqa: E501
START_TIMEOUT = 60.0


class AzuriteError(Exception):
    """Azurite could not be found, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class LocalAzurite:
    """Where the demo's Azurite lives: its files, log and pid under `state`."""

    root: Path  # the checkout, which holds node_modules
    state: Path  # .azurite/
    blob_port: int = BLOB_PORT
    queue_port: int = QUEUE_PORT
    table_port: int = TABLE_PORT

    @property
    def pid_file(self) -> Path:
        return self.state / "azurite.pid"

    @property
    def log_file(self) -> Path:
        return self.state / "azurite.log"

    @property
    def ports(self) -> tuple[int, int, int]:
        return (self.blob_port, self.queue_port, self.table_port)

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;"
            "BlobEndpoint=http://%s:%d/%s;QueueEndpoint=http://%s:%d/%s;"
            "TableEndpoint=http://%s:%d/%s;"
            % (
                DEV_ACCOUNT,
                DEV_KEY,
                HOST,
                self.blob_port,
                DEV_ACCOUNT,
                HOST,
                self.queue_port,
                DEV_ACCOUNT,
                HOST,
                self.table_port,
                DEV_ACCOUNT,
            )
        )

    def command(self) -> list[str]:
        binary = self.root / "node_modules" / ".bin" / "azurite"
        if not binary.exists():
            raise AzuriteError(
                "Azurite is not installed at %s; run scripts/setup first" % binary
            )
        return [
            str(binary),
            "--location",
            str(self.state),
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--blobHost",
            HOST,
            "--blobPort",
            str(self.blob_port),
            "--queueHost",
            HOST,
            "--queuePort",
            str(self.queue_port),
            "--tableHost",
            HOST,
            "--tablePort",
            str(self.table_port),
        ]

    def healthy(self, timeout: float = 2.0) -> bool:
        """True when blob, queue and table services all answer with the dev account."""
        if not all(_port_open(port) for port in self.ports):
            return False
        conn = self.connection_string
        try:
            BlobServiceClient.from_connection_string(
                conn, retry_total=0, connection_timeout=timeout, read_timeout=timeout
            ).get_service_properties()
            QueueServiceClient.from_connection_string(
                conn, retry_total=0, connection_timeout=timeout, read_timeout=timeout
            ).get_service_properties()
            tables = TableServiceClient.from_connection_string(
                conn, retry_total=0, connection_timeout=timeout, read_timeout=timeout
            )
            next(iter(tables.list_tables(results_per_page=1)), None)
        except AzureError as error:
            logger.debug("Azurite on %s is not healthy: %s", HOST, error)
            return False
        return True

    def recorded_pid(self) -> int | None:
        """The pid in the pid file when that process is still an Azurite."""
        try:
            pid = int(self.pid_file.read_text(encoding="ascii").strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_azurite(pid) else None

    def ensure_running(self) -> bool:
        """Reuse a healthy Azurite or start one; True when this call started it."""
        if self.healthy():
            return False
        pid = self.recorded_pid()
        if pid is None:
            taken = [port for port in self.ports if _port_open(port)]
            if taken:
                raise AzuriteError(
                    "port %s on %s is in use by something that is not a healthy "
                    "Azurite; stop it, or run the demo where those ports are free"
                    % (", ".join(str(port) for port in taken), HOST)
                )
            pid = self._start()
        self._wait_until_healthy(pid)
        return True

    def _start(self) -> int:
        self.state.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            # A session of its own, so Azurite outlives the demo and its terminal.
            process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )
        self.pid_file.write_text("%d\n" % process.pid, encoding="ascii")
        return process.pid

    def _wait_until_healthy(self, pid: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if not _alive(pid):
                raise AzuriteError(
                    "Azurite (pid %d) exited while starting; see %s"
                    % (pid, self.log_file)
                )
            time.sleep(0.25)
        raise AzuriteError(
            "Azurite (pid %d) did not answer on %s:%d-%d within %.0f s; see %s"
            % (pid, HOST, self.blob_port, self.table_port, START_TIMEOUT, self.log_file)
        )

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop the Azurite recorded in the pid file; its pid, or None if none ran."""
        pid = self.recorded_pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return None
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise AzuriteError(
                    "Azurite (pid %d) did not stop within %.0f s; kill it with "
                    "'kill -9 %d'" % (pid, timeout, pid)
                )
            time.sleep(0.1)
        return pid


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child of ours that exited stays a zombie until reaped; it is not running.
    return not _ps(pid, "stat=").startswith("Z")


def _is_azurite(pid: int) -> bool:
    """Guards against a recycled pid: only an Azurite process may be signalled."""
    return _alive(pid) and "azurite" in _ps(pid, "command=")


def _ps(pid: int, field: str) -> str:
    result = subprocess.run(
        ["ps", "-p", str(pid), "-o", field],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip()
