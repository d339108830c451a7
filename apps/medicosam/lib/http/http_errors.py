"""The core's errors as HTTP answers the Slicer and OHIF clients show to the user."""

from __future__ import annotations

import contextlib
import logging
from typing import Dict, Iterator, Optional, Tuple

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from monailabel.interfaces.exception import (
    ImageNotFoundException,
    LabelNotFoundException,
    MONAILabelError,
    MONAILabelException,
)

from medicosam_app.errors import (
    InvalidRequestError,
    MedicoSamError,
    ModelLoadingError,
    ModelUnavailableError,
    PacsError,
    StorageFullError,
    is_storage_full,
)

logger = logging.getLogger(__name__)


def http_answer(error: BaseException) -> Optional[Tuple[int, str, Optional[Dict[str, str]]]]:
    """The one mapping from the core's errors to HTTP: status, message, headers; None for an error that is ours
    to fix (answered 500)."""
    if isinstance(error, InvalidRequestError):
        return error.status, str(error), None
    if isinstance(error, ModelLoadingError):  # a download or load in progress: the client may simply retry
        return 503, str(error), {"Retry-After": "5"}
    if isinstance(error, ModelUnavailableError):
        return 503, str(error), None
    if isinstance(error, PacsError):
        return (503, str(error), {"Retry-After": str(error.retry_after_s)}) if error.away else (502, str(error), None)
    if is_storage_full(error):
        return 507, storage_full_message(error), None
    return None


def _log(answer: Tuple[int, str, Optional[Dict[str, str]]]) -> None:
    status, message, _ = answer
    if status == 507:
        logger.error("Answered 507: %s", message)
    else:
        logger.info("Answered %d: %s", status, message)


@contextlib.contextmanager
def as_http_errors() -> Iterator[None]:
    """Turn expected failures into their HTTP answer (:func:`http_answer`) for code that MONAI Label runs inside
    its own error handling (infer tasks, trainers); the server keeps serving."""
    try:
        yield
    except (MedicoSamError, OSError) as error:
        answer = http_answer(error)
        if answer is None:
            if not isinstance(error, MedicoSamError):
                raise
            logger.exception("MedicoSAM failed")
            raise HTTPException(status_code=500, detail=str(error)) from error
        _log(answer)
        status, message, headers = answer
        raise HTTPException(status_code=status, detail=message, headers=headers) from error


@contextlib.contextmanager
def as_client_errors() -> Iterator[None]:
    """:func:`as_http_errors`, and MONAI Label's own exceptions for a client's mistake (no such image or
    label, invalid input) as 404/422 instead of the 500 its server would answer."""
    try:
        with as_http_errors():
            yield
    except (ImageNotFoundException, LabelNotFoundException) as error:
        raise HTTPException(status_code=404, detail=str(error.msg)) from error
    except MONAILabelException as error:
        if error.error != MONAILabelError.INVALID_INPUT:
            raise
        logger.info("Rejected request (422): %s", error.msg)
        raise HTTPException(status_code=422, detail=str(error.msg)) from error


def storage_full_message(error: BaseException) -> str:
    """What a client shows when a write found no room (where the error does not say it already)."""
    if isinstance(error, StorageFullError):
        return str(error)
    where = getattr(error, "filename", None)
    return (f"The server's disk is full ({getattr(error, 'strerror', None) or error}"
            f"{f' writing {where}' if where else ''}): nothing was changed. Ask the server's administrator to free "
            "space, then send this again.")


async def core_error_answer(request: Request, error: Exception) -> JSONResponse:
    """The app-wide handler: a core error raised anywhere (storage code, routes MONAI Label serves without our
    wrappers) gets its :func:`http_answer`; any other error goes on to the 500 it was before."""
    answer = http_answer(error)
    if answer is None:
        raise error
    status, message, headers = answer
    logger.log(logging.ERROR if status >= 500 else logging.INFO, "%s %s answered %d: %s",
               request.method, request.url.path, status, message)
    return JSONResponse(status_code=status, content={"detail": message}, headers=headers)


def answer_core_errors(fastapi_app) -> None:
    """Register :func:`core_error_answer` on ``fastapi_app`` for the core's errors and for full disks."""
    fastapi_app.add_exception_handler(MedicoSamError, core_error_answer)
    fastapi_app.add_exception_handler(OSError, core_error_answer)
