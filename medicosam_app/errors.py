"""Errors the core raises. Each one carries a message written for the person who has to fix it.

The app layer maps them to HTTP in one place (``apps/medicosam/lib/http_errors.py``): :class:`InvalidRequestError` →
its 4xx, :class:`ModelUnavailableError` → 503, :class:`PacsError` → 503 (away) or 502 (answered an error),
:class:`StorageFullError` (and any ``OSError`` that :func:`is_storage_full`) → 507.
"""

import errno
from typing import Iterator

# A write refused for lack of room: the file system is full (ENOSPC), the user's quota is spent (EDQUOT), or the
# process's file-size limit is reached (EFBIG, ``ulimit -f``).
STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class MedicoSamError(Exception):
    """Base class for every error this package raises on purpose."""


class InvalidRequestError(MedicoSamError):
    """The request cannot be served as sent (bad prompt, coordinates outside the image, ...).

    ``status`` is the HTTP status the server should answer with.
    """

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class ImageReadError(InvalidRequestError):
    """An image file could not be read as a 3D (or 2D) image."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=422)


class CheckpointError(MedicoSamError):
    """A checkpoint file is missing, corrupt, or not a SAM checkpoint."""


class ModelUnavailableError(MedicoSamError):
    """No usable model is loaded; the message says what file to put where."""


class ModelLoadingError(ModelUnavailableError):
    """The model is being loaded or downloaded right now: try again shortly (HTTP 503 with Retry-After)."""


class PacsError(MedicoSamError):
    """The PACS did not serve what was asked. ``away``: it did not answer (refused, timed out, cut off), so the
    client may try again after ``retry_after_s``; else it answered with an error or with nothing usable."""

    def __init__(self, message: str, away: bool = False, retry_after_s: int = 10) -> None:
        super().__init__(message)
        self.away = away
        self.retry_after_s = retry_after_s


class StorageFullError(MedicoSamError):
    """A write found no room on its disk. Whatever was there before is unchanged; the message says which folder
    needs space (HTTP 507)."""


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what raised it, and so on (``__cause__``, else ``__context__``), each once."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def is_storage_full(error: BaseException) -> bool:
    """Whether ``error`` or anything that caused it is a write refused for lack of room (a writer may wrap the
    ``OSError``: ``torch.save`` raises ``RuntimeError``)."""
    return any(isinstance(e, StorageFullError) or (isinstance(e, OSError) and e.errno in STORAGE_FULL_ERRNOS)
               for e in causes(error))
