"""The audit trail: one JSON line per inference, label save, training round, promotion, rollback, deletion,
sign-in and refused request, appended to ``<audit_dir>/audit.jsonl`` and never rewritten.

Appending is safe from many threads and processes at once (the server, a training process, the CLI): each
record is one ``write()`` of one complete line to a file opened in append mode, under a file lock that also
serialises rotation. When ``audit.jsonl`` would grow past ``max_bytes`` it is renamed, whole, to
``audit-<UTC time>.jsonl`` (``os.link`` + ``unlink``: an existing file is never replaced) and a new one
starts; old content is never edited, truncated or moved into another file. Rotated files are kept for
ever unless ``keep_files`` says how many to keep.

:meth:`AuditLog.query` reads every file, oldest first, in the order records were appended, which is time
order when ``time`` is left for :meth:`AuditLog.append` to fill in. A line that is not a JSON object is
skipped and counted (:attr:`AuditQuery.skipped`), never fatal.

Usage by the server (the wiring)::

    audit = AuditLog(settings.audit_dir)
    audit.append(AuditRecord(
        event="infer", endpoint="POST /infer/medicosam_interactive", status=200,
        user=user.username, role=user.role.label,            # auth off: user=client_id, role=None
        task="medicosam_interactive", image=image_id,
        prompts=click_request.audit_summary(),
        model={"checkpoint_xxh128": ..., "semantic_version": ...},
        result=label_summary(label_array, axis=2), latency_s=0.42,
    ))
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from filelock import FileLock, Timeout

from ..atomic_files import fsync_directory, make_folders_durably
from .audit_record import AuditRecord, json_default, utc_now_iso

logger = logging.getLogger(__name__)

CURRENT_FILE = "audit.jsonl"
DEFAULT_MAX_BYTES = 50 * 2**20
_ROTATED = re.compile(r"audit-(\d{8}T\d{6}\.\d{6}Z)(?:-(\d+))?\.jsonl")
_STAMP = "%Y%m%dT%H%M%S.%fZ"

TimeLike = Union[datetime, str]


def parse_time(value: TimeLike, now: Optional[datetime] = None) -> datetime:
    """An aware datetime from ``value``: a datetime (naive = local time), an ISO-8601 date or time
    (``2025-03-01``, ``2025-03-01T14:00``, ``...Z``, ``...+01:00``; without a zone: local time), or a span back
    from now (``90s``, ``30m``, ``12h``, ``7d``). ``ValueError`` with the accepted forms otherwise."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.astimezone()
    text = str(value).strip()
    span = re.fullmatch(r"(\d+)\s*([smhd])", text)
    if span:
        seconds = int(span.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[span.group(2)]
        return (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValueError(
            f"cannot read the time {text!r}: use ISO-8601 such as 2025-03-01 or 2025-03-01T14:00 (local time), "
            "2025-03-01T13:00Z (UTC), or a span back from now such as 30m, 12h, 7d"
        ) from None
    return parsed if parsed.tzinfo else parsed.astimezone()


class AuditQuery:
    """Iterable over the records that pass the filters; :attr:`skipped` counts lines that were not JSON
    objects (damaged lines), known once iteration has finished."""

    def __init__(self, log: "AuditLog", user: Optional[str], image: Optional[str], since: Optional[datetime],
                 event: Optional[str]) -> None:
        self.log, self.user, self.image, self.since, self.event = log, user, image, since, event
        self.skipped = 0

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        self.skipped = 0
        for record in self.log._records(self):
            if self._wanted(record):
                yield record
        if self.skipped:
            logger.warning("audit: skipped %d damaged line(s) in %s", self.skipped, self.log.directory)

    def _wanted(self, record: Dict[str, Any]) -> bool:
        if self.user is not None and record.get("user") != self.user:
            return False
        if self.image is not None and record.get("image") != self.image:
            return False
        if self.event is not None and record.get("event") != self.event:
            return False
        if self.since is not None:
            try:
                when = parse_time(str(record.get("time")))
            except ValueError:
                return False  # no readable time: cannot be shown to be recent
            if when < self.since:
                return False
        return True


class AuditLog:
    """Append-only JSON Lines files in ``directory``.

    ``max_bytes``: rotate when the current file would grow past this. ``keep_files``: rotated files to keep
    (None: all; the oldest are deleted beyond this). ``fsync``: make every record durable before
    :meth:`append` returns (slower; off by default, the OS writes it within seconds).
    ``lock_timeout_s``: after this long waiting for another process's lock, the record is appended anyway
    (still one whole line) and only rotation waits for a later record.
    """

    def __init__(
        self,
        directory: Union[str, "os.PathLike[str]"],
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep_files: Optional[int] = None,
        fsync: bool = False,
        lock_timeout_s: float = 5.0,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        if keep_files is not None and keep_files < 0:
            raise ValueError(f"keep_files must be None or at least 0, not {keep_files}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        self.fsync = fsync
        self.current = self.directory / CURRENT_FILE
        self._threads = threading.Lock()
        self._processes = FileLock(str(self.directory / ".audit.lock"), timeout=lock_timeout_s, mode=0o600)

    def __repr__(self) -> str:
        return f"AuditLog({str(self.directory)!r})"

    # ---- writing -----------------------------------------------------------------------------------------

    def append(self, record: Union[AuditRecord, Mapping[str, Any]]) -> Dict[str, Any]:
        """Append ``record`` as one line (``time`` added if absent, first in the line); returns what was written."""
        fields = record.to_dict() if isinstance(record, AuditRecord) else dict(record)
        written = {"time": fields.pop("time", None) or utc_now_iso(), **fields}
        line = (json.dumps(written, default=json_default, separators=(",", ":")) + "\n").encode("ascii")
        with self._threads:
            if not self.directory.is_dir():
                make_folders_durably(self.directory)
            try:
                self._processes.acquire()
            except Timeout:
                logger.warning("audit: %s stayed locked; appending without rotation", self.directory)
                self._write(line, repair=False)
                return written
            try:
                self._rotate_if_full(len(line))
                self._write(line, repair=True)
            finally:
                self._processes.release()
        return written

    def _write(self, line: bytes, repair: bool) -> None:
        fd = os.open(self.current, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if repair and size and os.pread(fd, 1, size - 1) != b"\n":
                # A writer killed mid-line left a fragment: end it, so this record stays a line of its own.
                line = b"\n" + line
            written = os.write(fd, line)
            if written != len(line):  # a full disk: say so rather than leave half a record unnoticed
                raise OSError(errno.ENOSPC, f"audit: wrote {written} of {len(line)} bytes to {self.current}")
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if self.fsync and size == 0:
            fsync_directory(self.directory)

    def _rotate_if_full(self, incoming: int) -> None:
        try:
            size = os.stat(self.current).st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        stamp = datetime.now(timezone.utc).strftime(_STAMP)
        for attempt in range(1000):
            target = self.directory / (f"audit-{stamp}.jsonl" if attempt == 0 else f"audit-{stamp}-{attempt}.jsonl")
            try:
                os.link(self.current, target)  # never replaces a file that exists
                break
            except FileExistsError:
                continue
        else:
            raise OSError(f"audit: no free name to rotate {self.current} to")
        os.unlink(self.current)
        fsync_directory(self.directory)
        self._prune()

    def _prune(self) -> None:
        if self.keep_files is None:
            return
        rotated = self.rotated_files()
        for old in rotated[: max(0, len(rotated) - self.keep_files)]:
            old.unlink(missing_ok=True)
            logger.info("audit: deleted %s (keep_files=%d)", old, self.keep_files)

    # ---- reading -----------------------------------------------------------------------------------------

    def rotated_files(self) -> List[Path]:
        """The rotated files, oldest first."""
        found: List[Tuple[str, int, Path]] = []
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                match = _ROTATED.fullmatch(path.name)
                if match:
                    found.append((match.group(1), int(match.group(2) or 0), path))
        return [path for _, _, path in sorted(found)]

    def files(self) -> List[Path]:
        """Every file of the trail, oldest first, the current one last."""
        return self.rotated_files() + ([self.current] if self.current.exists() else [])

    def query(
        self,
        user: Optional[str] = None,
        image: Optional[str] = None,
        since: Optional[TimeLike] = None,
        event: Optional[str] = None,
    ) -> AuditQuery:
        """Records with this ``user``, ``image`` and ``event`` (None: any), at or after ``since``
        (see :func:`parse_time`), oldest first."""
        return AuditQuery(self, user, image, None if since is None else parse_time(since), event)

    def _records(self, query: AuditQuery) -> Iterator[Dict[str, Any]]:
        # Open the current file first: if it is rotated while we read the older ones, this descriptor still
        # holds it, and the rotated copy (the same inode) is skipped, so no record is read twice or missed.
        try:
            current = open(self.current, "rb")
        except FileNotFoundError:
            current = None
        try:
            current_id = _file_id(os.fstat(current.fileno())) if current else None
            for path in self.rotated_files():
                try:
                    with open(path, "rb") as f:
                        if _file_id(os.fstat(f.fileno())) == current_id:
                            continue
                        yield from _parse_lines(f, query, live=False)
                except FileNotFoundError:  # pruned meanwhile
                    continue
            if current is not None:
                yield from _parse_lines(current, query, live=True)
        finally:
            if current is not None:
                current.close()


def _file_id(info: os.stat_result) -> Tuple[int, int]:
    return info.st_dev, info.st_ino


def _parse_lines(f: Any, query: AuditQuery, live: bool) -> Iterator[Dict[str, Any]]:
    """The records of an open file. ``live``: the current file, whose unfinished last line is another
    process's record being written (not yet one, not damaged); in a rotated file it is damage."""
    for raw in f:
        if not raw.endswith(b"\n"):
            if not live:
                query.skipped += 1
            return
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            query.skipped += 1
            continue
        yield record
