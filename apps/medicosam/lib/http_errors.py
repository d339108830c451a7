"""The core's errors as HTTP answers the Slicer and OHIF clients show to the user."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from fastapi import HTTPException

from medicosam_app.errors import InvalidRequestError, MedicoSamError, ModelUnavailableError

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def as_http_errors() -> Iterator[None]:
    """Turn expected failures into 4xx/503 with their message; the server keeps serving."""
    try:
        yield
    except InvalidRequestError as error:
        logger.info("Rejected request (%d): %s", error.status, error)
        raise HTTPException(status_code=error.status, detail=str(error)) from error
    except ModelUnavailableError as error:
        raise HTTPException(status_code=503, detail=str(error)) from error
    except MedicoSamError as error:
        logger.exception("MedicoSAM failed")
        raise HTTPException(status_code=500, detail=str(error)) from error
