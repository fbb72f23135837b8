"""The file collector: an agent document already on disk (local runs, tests)."""

from __future__ import annotations

import os
import stat

from shared.errors import CollectError
from shared.inventory import FileSource, Target


class FileCollector:
    """Reads the target's file, refusing one larger than `max_bytes` unread."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return "FileCollector(max_bytes=%d)" % self.max_bytes

    def collect(self, target: Target) -> bytes:
        source = target.source
        if not isinstance(source, FileSource):
            raise CollectError(
                "target %r is not a file target; the file collector cannot read it"
                % target.id
            )
        path = source.path
        try:
            # Non-blocking, so that opening a named pipe with no writer returns
            # rather than waiting for good; only a regular file is read from there.
            descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            mode = os.fstat(descriptor).st_mode
            if not stat.S_ISREG(mode):
                os.close(descriptor)
                raise CollectError(
                    "agent document %s is %s; give the path of the document file"
                    % (
                        str(path),
                        "a directory"
                        if stat.S_ISDIR(mode)
                        else "not a regular file (a pipe, device or socket)",
                    )
                )
            with os.fdopen(descriptor, "rb") as handle:
                # One byte past the cap is enough to know the file is too big.
                data = handle.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise CollectError(
                "agent document %s does not exist; check the target's path in the "
                "inventory" % str(path)
            ) from None
        except IsADirectoryError:
            raise CollectError(
                "agent document %s is a directory; give the path of the document "
                "file" % str(path)
            ) from None
        except OSError as error:
            raise CollectError(
                "agent document %s cannot be read (%s)"
                % (str(path), error.strerror or type(error).__name__)
            ) from None
        if len(data) > self.max_bytes:
            raise CollectError(
                "agent document %s is larger than %d bytes (DOCUMENT_MAX_BYTES); it "
                "was not read whole — check the file, or raise the cap"
                % (str(path), self.max_bytes)
            )
        return data
