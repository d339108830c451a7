"""The core's errors as HTTP answers the Slicer and OHIF clients show to the user."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from fastapi import HTTPException
from monailabel.interfaces.exception import (
    ImageNotFoundException,
    LabelNotFoundException,
    MONAILabelError,
    MONAILabelException,
)

from medicosam_app.errors import InvalidRequestError, MedicoSamError, ModelLoadingError, ModelUnavailableError

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
