"""The server's security pieces. Re-exported here: :mod:`.paths`, the one check of request values (image ids,
label tags, upload names) that become file names."""

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
