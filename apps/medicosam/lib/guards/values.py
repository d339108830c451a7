"""The pieces the request checks need beside the request models (:mod:`medicosam_app.api`): uploads, image ids the
datastore knows, options per name. Each refusal is an :class:`InvalidRequestError` whose message says what to send
instead."""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from medicosam_app.errors import InvalidRequestError
from medicosam_app.request_values import parse_text, shortened_repr

logger = logging.getLogger(__name__)

# check(app, the endpoint's arguments by name): raises InvalidRequestError to refuse.
Check = Callable[[Any, Dict[str, Any]], None]

# Keys MONAI Label's server sets in an inference request itself; a client that sends them in ``params``
# could point the model at a file outside the datastore.
SERVER_SET_KEYS = ("session", "image_id")
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # MONAI Label's session ids are UUIDs
DEFAULT_SESSION_MAX_BYTES = 4096 << 20  # a session's files (an archive: its unpacked members), all together
MAX_ARCHIVE_MEMBERS = 20000  # a DICOM series of a few thousand slices fits many times over



# -- pieces ---------------------------------------------------------------------------------------


def upload_size(upload: Any) -> int:
    """Bytes in an uploaded file (FastAPI spools it to a seekable temporary file); position kept at 0."""
    stream = upload.file
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    return size


def require_non_empty(upload: Any, what: str) -> None:
    if upload is not None and upload_size(upload) == 0:
        name = f" '{upload.filename}'" if upload.filename else ""
        raise InvalidRequestError(f"The {what} file{name} is empty: send the file's contents.")


def require_image_id(value: Any, what: str = "image") -> str:
    return parse_text(value, what)


def require_known_image(app: Any, value: Any, what: str = "image") -> str:
    """An image the datastore lists; else a 404 (MONAI Label answered ``{}`` or 200 for any id)."""
    image = require_image_id(value, what)
    store = app.datastore()
    if store.get_image_info(image) or image in store.list_images():
        return image
    raise InvalidRequestError(
        f"Image {shortened_repr(image)} is not in the datastore; GET /datastore/ lists the images.", status=404
    )


def per_name_options(params: Optional[Mapping[str, Any]], names: Iterable[str], what: str) -> None:
    """The run-all endpoints take ``{"<name>": {options}, ...}``; each value must be an object."""
    for name in names:
        value = (params or {}).get(name)
        if value is not None and not isinstance(value, dict):
            raise InvalidRequestError(
                f"The options for {what} '{name}' must be a JSON object, got {shortened_repr(value)}."
            )
