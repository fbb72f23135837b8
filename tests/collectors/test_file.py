"""The file collector on real files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from shared.collectors.file import FileCollector
from shared.errors import CollectError
from shared.inventory import FileSource, Target


def _target(path: Path) -> Target:
    return Target(id="EDGE01", source=FileSource(path=path))


def test_reads_the_document_bytes_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "edge01.json"
    path.write_bytes(b"\xff\xfe{\x00}\x00")  # UTF-16 with a BOM: the parser's job

    assert FileCollector(max_bytes=1024).collect(_target(path)) == b"\xff\xfe{\x00}\x00"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"

    with pytest.raises(CollectError, match=r"absent\.json does not exist"):
        FileCollector(max_bytes=1024).collect(_target(path))


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CollectError, match="is a directory"):
        FileCollector(max_bytes=1024).collect(_target(tmp_path))


def test_file_at_the_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "full.json"
    path.write_bytes(b" " * 1024)

    assert len(FileCollector(max_bytes=1024).collect(_target(path))) == 1024


def test_file_one_byte_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 1025)

    with pytest.raises(CollectError, match="larger than 1024 bytes"):
        FileCollector(max_bytes=1024).collect(_target(path))


def _collect_within(path: Path, seconds: float) -> BaseException | bytes | None:
    """Collect in a daemon thread; None if it is still blocked after `seconds`."""
    outcome: list[BaseException | bytes] = []

    def run() -> None:
        try:
            outcome.append(FileCollector(max_bytes=1024).collect(_target(path)))
        except BaseException as error:  # handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome[0] if outcome else None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    # Opening a FIFO for reading blocks until a writer comes: a check (and the local
    # scan) hung there for good.
    path = tmp_path / "edge01.json"
    os.mkfifo(path)

    outcome = _collect_within(path, 5.0)

    assert isinstance(outcome, CollectError), outcome
    assert "is not a regular file" in str(outcome)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_device_is_refused_unread() -> None:
    outcome = _collect_within(Path("/dev/zero"), 5.0)

    assert isinstance(outcome, CollectError), outcome
    assert "/dev/zero is not a regular file" in str(outcome)
