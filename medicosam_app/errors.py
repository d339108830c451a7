"""Errors the core raises. Each one carries a message written for the person who has to fix it.

The app layer maps them to HTTP: :class:`InvalidRequestError` → 4xx, :class:`ModelUnavailableError` → 503.
"""


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
