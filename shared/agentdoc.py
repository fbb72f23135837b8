"""The compressed agent document, as `Get-StigwatchDocument.ps1 -Compress` prints it.

Azure Arc keeps only the last 4 KB of a run command's inline output, and one Send
connector is about 1 KB of JSON, so the agent script can print the document gzipped and
base64-encoded, framed so that a cut or damaged output is caught instead of judged:

    stigwatch-document/1 gzip base64
    H4sIAAAAAAAEAO29B2AcSZYlJi9tynt/SvVK1+B0oQiAYBMk2JBAEOzBiM3mkuwdaUcjKa...
    ...                          (the gzip stream in base64, 76-character lines)
    stigwatch-end length=5123 sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b...

`length` is the size in bytes of the UTF-8 document (no byte-order mark) and `sha256`
its lower-case hex SHA-256. Blank lines and a carriage return at line ends are ignored;
anything else before the header or after the trailer is refused, because it means the
output was not what the script prints.

The arc collector decodes here and hands the parser plain document bytes; `is_framed`
lets any other reader recognise the form.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import re
import zlib

from shared.errors import InputError
from shared.settings import DEFAULT_SIZE_CAP  # one cap, plain or compressed

HEADER = "stigwatch-document/1 gzip base64"
_TRAILER = re.compile(r"^stigwatch-end length=(\d+) sha256=([0-9a-f]{64})$")
_LINE_WIDTH = 76


def is_framed(data: bytes) -> bool:
    """True when `data` looks like the compressed form, even a damaged one."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[: len(HEADER)]
    return head == HEADER.encode("ascii") or b"stigwatch-end length=" in data[-200:]


def encode(document: bytes) -> str:
    """The compressed form of `document` (UTF-8 JSON), as the agent script prints it.

    Python's twin of the script's -Compress path; tests use it to check the decoder
    and the sample output.
    """
    packed = base64.b64encode(gzip.compress(document, mtime=0)).decode("ascii")
    lines = [packed[i : i + _LINE_WIDTH] for i in range(0, len(packed), _LINE_WIDTH)]
    trailer = "stigwatch-end length=%d sha256=%s" % (
        len(document),
        hashlib.sha256(document).hexdigest(),
    )
    return "\r\n".join([HEADER, *lines, trailer]) + "\r\n"


def decode(data: bytes, *, size_cap: int = DEFAULT_SIZE_CAP) -> bytes:
    """The UTF-8 document inside the compressed form; raise InputError if it is damaged.

    Every reason says whether the output was cut (the start or the end is missing) or
    altered (it is whole but does not match its length and hash), and what to do.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise InputError(
            "compressed agent output holds non-ASCII bytes, so it was altered on the "
            "way; run the collection again and check what rewrites the output"
        ) from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError("empty output — the collection may have failed")

    has_header = lines[0] == HEADER
    trailer = _TRAILER.match(lines[-1])
    if not has_header and trailer:
        raise InputError(
            "compressed agent output lost its start (the first line is %r, not the "
            "header): the output was cut — Arc keeps only the last 4 KB inline; give "
            "this target an output blob in the inventory" % _clip(lines[0])
        )
    if not has_header:
        raise InputError(
            "output is not the agent's compressed form (first line %r); run "
            "Get-StigwatchDocument.ps1 with -Compress" % _clip(lines[0])
        )
    if not trailer:
        raise InputError(
            "compressed agent output lost its end (no 'stigwatch-end' line): the "
            "output was cut or the script stopped early; check the run command's "
            "error output, or give this target an output blob in the inventory"
        )

    length, digest = int(trailer.group(1)), trailer.group(2)
    if length > size_cap:
        raise InputError(
            "compressed agent output declares a %d-byte document, over the %d-byte "
            "size cap; raise the cap if the organisation really is that large"
            % (length, size_cap)
        )
    document = _inflate("".join(lines[1:-1]), size_cap)
    if len(document) != length or hashlib.sha256(document).hexdigest() != digest:
        raise InputError(
            "compressed agent output was altered: it decodes to %d bytes with SHA-256 "
            "%s, but its trailer says %d bytes with %s; run the collection again"
            % (
                len(document),
                hashlib.sha256(document).hexdigest()[:12],
                length,
                digest[:12],
            )
        )
    return document


def _inflate(packed: str, size_cap: int) -> bytes:
    try:
        compressed = base64.b64decode(packed, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(
            "compressed agent output is not valid base64, so it was cut or altered; "
            "run the collection again"
        ) from None
    # wbits 16+MAX_WBITS reads a gzip stream; max_length stops a decompression bomb.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        document = inflater.decompress(compressed, size_cap + 1)
    except zlib.error as error:
        raise InputError(
            "compressed agent output does not inflate (%s), so it was cut or altered; "
            "run the collection again" % error
        ) from None
    if len(document) > size_cap:
        raise InputError(
            "compressed agent output inflates past the %d-byte size cap; raise the cap "
            "if the organisation really is that large" % size_cap
        )
    if not inflater.eof:
        raise InputError(
            "compressed agent output ends inside its gzip stream, so it was cut; "
            "give this target an output blob in the inventory"
        )
    return document


def _clip(line: str) -> str:
    return line if len(line) <= 40 else line[:37] + "..."
