"""The core's errors as HTTP answers the Slicer and OHIF clients show to the user."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

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
    StorageFullError,
    is_storage_full,
)

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def as_http_errors() -> Iterator[None]:
    """Turn expected failures into 4xx/503 with their message; the server keeps serving."""
    try:
        yield
    except InvalidRequestError as error:
        logger.info("Rejected request (%d): %s", error.status, error)
        raise HTTPException(status_code=error.status, detail=str(error)) from error
    except ModelLoadingError as error:  # a download or load in progress: the client may simply retry
        raise HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "5"}) from error
    except ModelUnavailableError as error:
        raise HTTPException(status_code=503, detail=str(error)) from error
    except (StorageFullError, OSError) as error:
        if not is_storage_full(error):
            raise
        logger.error("Answered 507: %s", storage_full_message(error))
        raise HTTPException(status_code=507, detail=storage_full_message(error)) from error
    except MedicoSamError as error:
        logger.exception("MedicoSAM failed")
        raise HTTPException(status_code=500, detail=str(error)) from error


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


async def storage_full_as_507(request: Request, error: Exception) -> JSONResponse:
    """The app-wide handler for writes that found no room (routes MONAI Label serves without our wrappers
    included): 507 with a message; any other OSError goes on to the 500 it was before."""
    if not is_storage_full(error):
        raise error
    logger.error("%s %s answered 507: %s", request.method, request.url.path, storage_full_message(error))
    return JSONResponse(status_code=507, content={"detail": storage_full_message(error)})


def answer_storage_full(fastapi_app) -> None:
    """Register :func:`storage_full_as_507` on ``fastapi_app``."""
    fastapi_app.add_exception_handler(OSError, storage_full_as_507)
    fastapi_app.add_exception_handler(StorageFullError, storage_full_as_507)
