"""Checks on values from a request before they touch the file system."""

from .paths import (
    MAX_NAME_BYTES,
    UnsafePathError,
    confined_path,
    safe_extension,
    safe_name,
    safe_upload_filename,
)

__all__ = [
    "MAX_NAME_BYTES",
    "UnsafePathError",
    "confined_path",
    "safe_extension",
    "safe_name",
    "safe_upload_filename",
]
