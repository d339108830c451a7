"""The pieces every request check is made of: uploads, image ids, small JSON, label tags and label info, options
per name. Each refusal is an :class:`InvalidRequestError` whose message says what to send instead."""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from monailabel.interfaces.datastore import DefaultLabelTag

from medicosam_app.errors import InvalidRequestError
from medicosam_app.request_values import (
    MAX_TEXT_LENGTH,
    parse_bool,
    parse_int,
    parse_number,
    parse_text,
    shortened_repr,
)
from medicosam_app.security.paths import safe_name



logger = logging.getLogger(__name__)

# check(app, the endpoint's arguments by name): raises InvalidRequestError (or HTTPException) to refuse.
Check = Callable[[Any, Dict[str, Any]], None]

# Keys MONAI Label's server sets in an inference request itself; a client that sends them in ``params``
# could point the model at a file outside the datastore.
SERVER_SET_KEYS = ("session", "image_id")
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # MONAI Label's session ids are UUIDs
# JSON bodies (next sample, batch inference): what Slicer and OHIF send is a few hundred bytes.
MAX_JSON_BODY_BYTES = 64 * 1024
MAX_LABELS = 1024  # label_info entries: more classes than any segmentation has
MAX_JSON_DEPTH = 3  # {"key": [..]} is 2; an option object holding a list is 3
DEFAULT_SESSION_MAX_BYTES = 4096 << 20  # a session's files (an archive: its unpacked members), all together
MAX_ARCHIVE_MEMBERS = 20000  # a DICOM series of a few thousand slices fits many times over
BATCH_IMAGE_SETS = ("all", "labeled", "unlabeled")



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


def require_small_json(value: Any, what: str) -> None:
    """A JSON body of at most :data:`MAX_JSON_BODY_BYTES` (413 beyond)."""
    try:
        size = len(json.dumps(value, separators=(",", ":")))
    except (RecursionError, ValueError):
        raise InvalidRequestError(f"{what} is nested too deeply to be read.", status=400) from None
    if size > MAX_JSON_BODY_BYTES:
        raise InvalidRequestError(
            f"{what} is {size} bytes of JSON; at most {MAX_JSON_BODY_BYTES} are accepted. Send only the options "
            f"the request takes (strings of at most {MAX_TEXT_LENGTH} characters).",
            status=413,
        )


def check_json_values(value: Any, key: str, depth: int = 0) -> None:
    """Every string in a JSON value at most :data:`MAX_TEXT_LENGTH` characters (keys too), nesting at most
    :data:`MAX_JSON_DEPTH` levels below the body."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequestError(f"'{key}' is nested more than {MAX_JSON_DEPTH} levels deep: send plain values.")
    if isinstance(value, str):
        if len(value) > MAX_TEXT_LENGTH:
            raise InvalidRequestError(
                f"'{key}' is {len(value)} characters long; at most {MAX_TEXT_LENGTH} are allowed."
            )
    elif isinstance(value, dict):
        for name, item in value.items():
            check_json_values(name, f"{key} key", depth)
            check_json_values(item, f"{key}.{name}" if depth else str(name), depth + 1)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            check_json_values(item, f"{key}[{position}]", depth + 1)


def label_tag_of(value: Any) -> str:
    """A label tag from a request body: text, and a plain name (the same rule as ``PUT /datastore/label``)."""
    return safe_name(parse_text(value, "label_tag"), "The label tag")


def inference_label_tag(value: Any) -> str:
    """The tag an inference result is saved under (``save_label``): a plain name, ``original`` by default,
    never ``final``: that is the annotator's finished label, which a click's one-slice mask must not replace."""
    tag = label_tag_of(DefaultLabelTag.ORIGINAL.value if value is None else value)
    if tag == DefaultLabelTag.FINAL.value:
        raise InvalidRequestError(
            "Inference results are drafts and are never saved as the 'final' label (an annotator's finished "
            "label): leave out save_label, or save under another label_tag such as 'original'; submit a final "
            "label with PUT /datastore/label."
        )
    return tag


def check_label_info(value: Any) -> None:
    """``label_info`` as Slicer sends it: ``[{"name": "liver", "idx": 1}, ...]`` (other keys are kept)."""
    if value is None:
        return
    if not isinstance(value, list):
        raise InvalidRequestError(
            f"'label_info' must be a list such as [{{\"name\": \"liver\", \"idx\": 1}}], got {shortened_repr(value)}."
        )
    if len(value) > MAX_LABELS:
        raise InvalidRequestError(f"'label_info' lists {len(value)} labels; at most {MAX_LABELS} are accepted.",
                                  status=413)
    require_small_json(value, "'label_info'")
    check_json_values(value, "label_info")
    for n, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise InvalidRequestError(
                f"'label_info[{n}]' must be an object {{\"name\": ..., \"idx\": ...}}, got {shortened_repr(entry)}."
            )
        if "name" in entry:
            parse_text(entry["name"], f"label_info[{n}].name")
        if "idx" in entry:
            parse_int(entry["idx"], f"label_info[{n}].idx", minimum=0, maximum=65535)


def per_name_options(params: Optional[Mapping[str, Any]], names: Iterable[str], what: str) -> None:
    """The run-all endpoints take ``{"<name>": {options}, ...}``; each value must be an object."""
    for name in names:
        value = (params or {}).get(name)
        if value is not None and not isinstance(value, dict):
            raise InvalidRequestError(
                f"The options for {what} '{name}' must be a JSON object, got {shortened_repr(value)}."
            )


def monai_label_options(request: Mapping[str, Any]) -> Dict[str, Any]:
    """The inference options MONAI Label itself reads, checked: it would take ``"save_label": "false"`` as
    true and save the result as a label, and fail with a 500 on a ``timeout`` that is not a number. A result
    is saved (``save_label``) under a plain tag, never as the ``final`` label (see
    :func:`inference_label_tag`)."""
    options: Dict[str, Any] = {"save_label": parse_bool(request.get("save_label"), "save_label", default=False)}
    if request.get("label_tag") is not None:
        options["label_tag"] = parse_text(request["label_tag"], "label_tag")
    if options["save_label"]:
        options["label_tag"] = inference_label_tag(request.get("label_tag"))
    if request.get("timeout") is not None:
        options["timeout"] = parse_number(request["timeout"], "timeout", minimum=1)
    return options
