"""Compressed voxel data read as a stream to its end: every gzip member (or one zlib or bzip2 stream) must
decompress to its end-of-stream marker with matching checksums. Bytes are counted, never kept beyond a chunk."""

from __future__ import annotations

import bz2
import os
import zlib
from typing import BinaryIO, Optional, Tuple

CHUNK = 1 << 20  # bytes read, and at most produced, per decompression step
GZIP_MAGIC = b"\x1f\x8b"


class IncompleteFileError(ValueError):
    """The file is truncated or corrupt; the message says what is wrong and never names the file's path
    (callers add the name they know the file by)."""



def inflate_gzip(f: BinaryIO, keep: int = 0) -> Tuple[int, bytes]:
    """Decompress every gzip member from ``f``'s position to its end; returns (bytes produced, the first
    ``keep`` of them). Each member must reach its end-of-stream marker with its CRC-32 and length right,
    and nothing but another member may follow one."""
    total, kept, members = 0, bytearray(), 0
    inflater: Optional["zlib._Decompress"] = None
    pending = b""  # input not yet given to a member (the start of the next one)
    consumed = 0  # compressed bytes read so far
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            break
        consumed += len(chunk)
        data = pending + chunk
        pending = b""
        while data:
            if inflater is None:
                if len(data) < 2:
                    pending = data
                    break
                if not data.startswith(GZIP_MAGIC):
                    raise IncompleteFileError(
                        f"{len(data) + rest_of_file(f)} byte(s) that are not gzip data follow the end of the compressed "
                        f"stream (after {consumed - len(data)} bytes): the file is corrupt (something was appended)"
                    )
                inflater, members = zlib.decompressobj(wbits=31), members + 1
            try:
                out = inflater.decompress(data, CHUNK)
                while True:
                    total += len(out)
                    if len(kept) < keep:
                        kept += out[: keep - len(kept)]
                    if inflater.eof or (len(out) < CHUNK and not inflater.unconsumed_tail):
                        break
                    out = inflater.decompress(inflater.unconsumed_tail, CHUNK)
            except zlib.error as error:
                raise IncompleteFileError(
                    f"the gzip-compressed data is corrupt ({zlib_reason(error)}) in member {members}"
                ) from None
            if inflater.eof:
                data, inflater = inflater.unused_data, None
            else:
                data = b""
    if pending:
        raise IncompleteFileError(
            f"{len(pending)} byte(s) that are not gzip data follow the end of the compressed stream: the file is "
            "corrupt (something was appended)"
        )
    if inflater is not None or members == 0:
        raise IncompleteFileError(
            f"the gzip-compressed data ends before its end-of-stream marker (the file has {consumed} bytes, "
            f"{total} decompressed): the file is truncated"
        )
    return total, bytes(kept)


def inflate_one_stream(f: BinaryIO, kind: str) -> int:
    """Decompress one zlib (or gzip: MetaIO reads either) or bzip2 stream from ``f``'s position; it must end
    with its end-of-stream marker, with nothing after it. Returns the bytes it produces."""
    if kind == "bzip2":
        inflater, errors = bz2.BZ2Decompressor(), (OSError, ValueError)
    else:
        inflater, errors = zlib.decompressobj(wbits=47), (zlib.error,)
    total, consumed = 0, 0
    while not inflater.eof:
        chunk = f.read(CHUNK)
        if not chunk:
            raise IncompleteFileError(
                f"the {kind}-compressed voxel data ends before its end-of-stream marker ({consumed} compressed "
                f"bytes, {total} decompressed): the file is truncated"
            )
        consumed += len(chunk)
        try:
            if kind == "bzip2":
                out = inflater.decompress(chunk, CHUNK)
                total += len(out)
                while not inflater.eof and inflater.needs_input is False:
                    out = inflater.decompress(b"", CHUNK)
                    total += len(out)
            else:
                out = inflater.decompress(chunk, CHUNK)
                while True:
                    total += len(out)
                    if inflater.eof or (len(out) < CHUNK and not inflater.unconsumed_tail):
                        break
                    out = inflater.decompress(inflater.unconsumed_tail, CHUNK)
        except errors as error:
            raise IncompleteFileError(f"the {kind}-compressed voxel data is corrupt ({zlib_reason(error)})") from None
    extra = len(inflater.unused_data) + rest_of_file(f)
    if extra:
        raise IncompleteFileError(
            f"{extra} byte(s) follow the end of the {kind}-compressed voxel data: the file is corrupt "
            "(something was appended)"
        )
    return total


def rest_of_file(f: BinaryIO) -> int:
    here = f.tell()
    end = f.seek(0, os.SEEK_END)
    f.seek(here)
    return end - here


def zlib_reason(error: Exception) -> str:
    text = str(error)
    return text.split(": ", 1)[-1] if "while decompressing" in text else text
