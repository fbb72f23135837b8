"""The demo's Azurite: started once under its state folder, reused, kept, stopped.

These start real Azurite processes on free loopback ports (never 10000-10002, which may
hold the user's demo), each with a state folder of its own.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient

from examples.azurite import AzuriteError, LocalAzurite
from shared.account import LOCAL_CONNECTION_STRING

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalAzurite]:
    azurite = LocalAzurite(
        ROOT, tmp_path / ".azurite", _free_port(), _free_port(), _free_port()
    )
    try:
        yield azurite
    finally:
        azurite.stop()


def test_the_demo_stores_where_findings_reads_by_default() -> None:
    azurite = LocalAzurite(ROOT, ROOT / ".azurite")

    assert azurite.ports == (10000, 10001, 10002)
    assert _parts(azurite.connection_string) == _parts(LOCAL_CONNECTION_STRING)


def _parts(connection_string: str) -> dict[str, str]:
    pairs = (part.split("=", 1) for part in connection_string.split(";") if part)
    return {name.lower(): value for name, value in pairs}


def test_first_call_starts_azurite_and_records_its_pid(local: LocalAzurite) -> None:
    assert not local.healthy()

    assert local.ensure_running() is True

    assert local.healthy()
    assert local.recorded_pid() is not None
    assert local.log_file.exists()


def test_second_call_reuses_the_healthy_azurite(local: LocalAzurite) -> None:
    local.ensure_running()
    pid = local.recorded_pid()

    assert local.ensure_running() is False
    assert local.recorded_pid() == pid


def test_stop_ends_azurite_and_forgets_its_pid(local: LocalAzurite) -> None:
    local.ensure_running()
    pid = local.recorded_pid()

    assert local.stop() == pid

    assert not local.healthy()
    assert not local.pid_file.exists()
    assert local.stop() is None


def test_tables_survive_a_restart(local: LocalAzurite) -> None:
    local.ensure_running()
    TableServiceClient.from_connection_string(local.connection_string).create_table(
        "demofindings"
    )
    local.stop()

    local.ensure_running()

    service = TableServiceClient.from_connection_string(local.connection_string)
    assert "demofindings" in [table.name for table in service.list_tables()]


def test_a_port_held_by_something_else_is_refused(local: LocalAzurite) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", local.queue_port))
        squatter.listen()

        with pytest.raises(AzuriteError, match=str(local.queue_port)):
            local.ensure_running()

    assert not local.pid_file.exists()


def test_stop_never_signals_a_process_that_is_not_azurite(local: LocalAzurite) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        local.state.mkdir(parents=True)
        local.pid_file.write_text("%d\n" % bystander.pid, encoding="ascii")

        assert local.stop() is None

        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
