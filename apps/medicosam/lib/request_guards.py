"""Every malformed request gets a 4xx whose message says what to fix, before MONAI Label's endpoint runs.

MONAI Label 0.8.5 answers many client mistakes with a 500: ``params`` that is not a JSON object, an
unknown model or strategy, a missing image. Training and scoring requests for an unknown name or with
bad options are even accepted (200) and fail later in a background process the client never hears from.
Each endpoint named in :data:`GUARDS` is therefore rebuilt at start-up around a check of its arguments,
run first, and MONAI Label's own exceptions are translated on the way out (see
:func:`.http_errors.as_client_errors`). Valid requests pass unchanged: the protocol the Slicer and OHIF
clients speak stays the same.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from fastapi import FastAPI
from monailabel.interfaces.datastore import DefaultLabelTag

from medicosam_app.atomic_files import write_bytes_atomic
from medicosam_app.errors import InvalidRequestError
from medicosam_app.request_values import (
    MAX_TEXT_LENGTH,
    optional_text,
    parse_bool,
    parse_int,
    parse_json_object,
    parse_text,
    shortened_repr,
)
from medicosam_app.security.paths import safe_name, safe_upload_filename
from medicosam_app.security.users import Role

from .http_errors import as_client_errors
from .request_context import current_user
from .responsive_server import replace_endpoints
from .session_images import resolve_session_image

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


def check_session(app: Any, session_id: str) -> None:
    """A session that exists on this server; its id is a plain name, never a path."""
    sessions = app.sessions()
    if sessions is None:
        raise InvalidRequestError("Sessions are not enabled on this server (MONAI_LABEL_SESSIONS).", status=406)
    if not SESSION_ID.fullmatch(session_id) or sessions.get_session(session_id, update_ts=False) is None:
        raise InvalidRequestError(
            f"Session {shortened_repr(session_id)} was not found (sessions expire): upload the image again with "
            "PUT /session/ and use the session_id it answers.",
            status=404,
        )
    require_session_owner(sessions, session_id)
    resolve_session_image(sessions, session_id)


OWNER_FILE = ".medicosam_owner"  # inside the session's folder, so it goes when the session goes


def session_owner(sessions: Any, session_id: str) -> Optional[str]:
    try:
        return (Path(sessions.store_path) / session_id / OWNER_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def require_session_owner(sessions: Any, session_id: str) -> None:
    """With sign-in on, a session serves only the user who uploaded it (and admins); a session whose owner
    is not recorded (made with sign-in off) is an admin's only."""
    user = current_user()
    if user is None or user.role >= Role.ADMIN:
        return
    if session_owner(sessions, session_id) != user.username:
        raise InvalidRequestError(
            f"Session {shortened_repr(session_id)} was not found (sessions belong to the user who uploaded them).",
            status=404,
        )


def record_session_owner(app: Any, result: Any) -> None:
    """After ``PUT /session/``: who uploaded it."""
    user = current_user()
    sessions = app.sessions()
    session_id = result.get("session_id") if isinstance(result, dict) else None
    if user is None or sessions is None or not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
        return
    write_bytes_atomic(str(Path(sessions.store_path) / session_id / OWNER_FILE), user.username.encode("utf-8"))


def after_session_upload(app: Any, result: Any) -> None:
    """After ``PUT /session/``: the session's one image found (an archive or several files are a folder,
    see :mod:`.session_images`), else the session is removed again and the upload refused (422); then
    who uploaded it. The answer's ``session_info`` names the image found."""
    sessions = app.sessions()
    session_id = result.get("session_id") if isinstance(result, dict) else None
    if sessions is None or not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
        return
    try:
        resolve_session_image(sessions, session_id)
    except Exception:
        sessions.remove_session(session_id)
        raise
    info = sessions.get_session(session_id, update_ts=False)
    if info is not None:
        result["session_info"] = info.to_json()
    record_session_owner(app, result)


def session_max_bytes(app: Any) -> int:
    return int(getattr(app, "session_max_bytes", DEFAULT_SESSION_MAX_BYTES))


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def archive_format(filename: str) -> Optional[str]:
    """The shutil archive format a file name says (``zip``, ``gztar`` ...), or None."""
    name = filename.lower()
    for format_name, extensions, _ in shutil.get_unpack_formats():
        if any(name.endswith(extension) for extension in extensions):
            return format_name
    return None


def check_archive(upload: Any, max_bytes: int = DEFAULT_SESSION_MAX_BYTES) -> int:
    """An archive MONAI Label will unpack: readable, every member stays inside the unpack folder (a tar
    member named ``../x`` or ``/etc/x`` would be written outside it on Python 3.11), at most
    :data:`MAX_ARCHIVE_MEMBERS` members and ``max_bytes`` unpacked (from the members' recorded sizes, before
    anything is unpacked: a zip of zeros grows a thousandfold; 413 beyond). Returns the unpacked size."""
    filename = upload.filename or ""
    format_name = archive_format(filename)
    if format_name is None:
        known = ", ".join(e for _, extensions, _ in shutil.get_unpack_formats() for e in extensions)
        raise InvalidRequestError(f"uncompress=true needs an archive ({known}); '{filename}' is none of those.")
    stream = upload.file
    try:
        if format_name == "zip":
            with zipfile.ZipFile(stream) as archive:
                entries = archive.infolist()
                names = [entry.filename for entry in entries]
                unpacked = sum(entry.file_size for entry in entries)
        else:
            with tarfile.open(fileobj=stream, mode="r:*") as archive:
                members = archive.getmembers()
                if any(not (m.isfile() or m.isdir()) for m in members):
                    raise InvalidRequestError(f"The archive '{filename}' holds links or devices: send only files.")
                names = [m.name for m in members]
                unpacked = sum(m.size for m in members if m.isfile())
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise InvalidRequestError(f"'{filename}' cannot be read as a {format_name} archive: {error}.") from None
    finally:
        stream.seek(0)
    for name in names:
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts:
            raise InvalidRequestError(f"The archive '{filename}' has a member outside its folder: {name!r}.")
    if len(names) > MAX_ARCHIVE_MEMBERS:
        raise InvalidRequestError(
            f"The archive '{filename}' has {len(names)} members; a session takes at most {MAX_ARCHIVE_MEMBERS}.",
            status=413,
        )
    if unpacked > max_bytes:
        raise InvalidRequestError(
            f"The archive '{filename}' unpacks to {_megabytes(unpacked)}; a session takes at most "
            f"{_megabytes(max_bytes)} (session_max_mb). Send the image alone, or a smaller archive.",
            status=413,
        )
    return unpacked


def per_name_options(params: Optional[Mapping[str, Any]], names: Iterable[str], what: str) -> None:
    """The run-all endpoints take ``{"<name>": {options}, ...}``; each value must be an object."""
    for name in names:
        value = (params or {}).get(name)
        if value is not None and not isinstance(value, dict):
            raise InvalidRequestError(
                f"The options for {what} '{name}' must be a JSON object, got {shortened_repr(value)}."
            )


# -- one check per endpoint -----------------------------------------------------------------------


def check_infer(app: Any, arguments: Dict[str, Any]) -> None:
    """``POST /infer/{model}``: params a JSON object, a model that exists, an image id or a live session."""
    params = parse_json_object(arguments.get("params"), "params")
    for key in SERVER_SET_KEYS:
        if key in params:
            raise InvalidRequestError(f"'{key}' is set by the server; leave it out of params.")
    app.require_task("model", params.get("model", arguments.get("model")))
    if parse_bool(params.get("save_label"), "save_label", default=False):
        inference_label_tag(params.get("label_tag"))
    if arguments.get("label") is not None:
        raise InvalidRequestError("The MedicoSAM models take no label file: send the prompts in params.")
    session_id = arguments.get("session_id")
    if session_id:
        check_session(app, session_id)
    elif arguments.get("file") is not None:
        raise InvalidRequestError(
            "This server segments the images of its datastore only: send image=<id> (GET /datastore/ lists them), "
            "or upload the image with PUT /session/ and send session_id."
        )
    else:
        image = arguments.get("image")
        if not (isinstance(image, str) and image.strip()):
            raise InvalidRequestError("Send image=<id> (GET /datastore/ lists the images) or a session_id.")
        require_image_id(image)
    if getattr(arguments.get("output"), "value", arguments.get("output")) == "dicom_seg":
        from monailabel.datastore.dicom import DICOMWebDatastore

        if not isinstance(app.datastore(), DICOMWebDatastore):
            raise InvalidRequestError("output=dicom_seg needs a DICOMweb datastore; use output=image or all here.")
        if params.get("label_info") is None:
            raise InvalidRequestError("output=dicom_seg needs 'label_info' in params to name the segments.")
        check_label_info(params["label_info"])


def check_label_save(app: Any, arguments: Dict[str, Any]) -> None:
    """``PUT /datastore/label``: an image id, params a JSON object with a well-formed label_info, a file."""
    require_image_id(arguments.get("image"))
    params = parse_json_object(arguments.get("params"), "params")
    require_small_json(params, "The label's params")  # kept with the label: bounded like any stored text
    check_label_info(params.get("label_info"))
    label = arguments.get("label")
    if label is not None:  # MONAI Label keeps this name's extension: the client's path cut to a plain name
        label.filename = safe_upload_filename(label.filename, "The label file's name")
    require_non_empty(label, "label")


def check_image_upload(app: Any, arguments: Dict[str, Any]) -> None:
    """``PUT /datastore/image``: params a JSON object and a file with contents."""
    parse_json_object(arguments.get("params"), "params")
    upload = arguments.get("file")
    if upload is not None:  # the image id comes from this name when the request names none
        upload.filename = safe_upload_filename(upload.filename, "The image file's name")
    require_non_empty(upload, "image")


def json_field_check(field: str) -> Check:
    """For the info endpoints, whose form field ``field`` MONAI Label parses as JSON."""

    def check(app: Any, arguments: Dict[str, Any]) -> None:
        parse_json_object(arguments.get(field), field)

    check.__name__ = f"check_{field}_json"
    return check


def check_strategy(app: Any, arguments: Dict[str, Any]) -> None:
    """``POST /activelearning/{strategy}``; ``params`` may name another strategy, which is the one used.

    MONAI Label stores the body's ``client_id`` in the chosen image's info in the datastore index (and logs
    the whole body), so the body is bounded like an inference's ``params``: at most
    :data:`MAX_JSON_BODY_BYTES`, strings of at most 1024 characters, ``client_id`` a string, ``label_tag``
    a plain name. With sign-in on, the signed-in user's name is recorded, not what the client claims."""
    params = dict(arguments.get("params") or {})
    require_small_json(params, "The next-sample request's body")
    app.require_task("strategy", params.get("strategy", arguments.get("strategy")))
    if "client_id" in params:
        client_id = optional_text(params["client_id"], "client_id")
        if client_id is None:
            del params["client_id"]
        else:
            params["client_id"] = client_id
    if params.get("label_tag") is not None:
        params["label_tag"] = label_tag_of(params["label_tag"])
    labels = params.get("labels")
    if labels is not None:
        if not isinstance(labels, list):
            raise InvalidRequestError(f"'labels' must be a list of label names, got {shortened_repr(labels)}.")
        for position, name in enumerate(labels):
            parse_text(name, f"labels[{position}]")
    check_json_values(params, "body")
    user = current_user()
    if user is not None:
        params["client_id"] = user.username
    arguments["params"] = params


def check_scoring(app: Any, arguments: Dict[str, Any]) -> None:
    """``POST /scoring/{method}``: the method must exist before the background task is started."""
    params = arguments.get("params") or {}
    require_small_json(params, "The scoring options")
    app.require_task("scoring method", params.get("method", arguments.get("method")))


def check_all_scoring(app: Any, arguments: Dict[str, Any]) -> None:
    require_small_json(arguments.get("params") or {}, "The scoring options")
    per_name_options(arguments.get("params"), app.task_names("scoring method"), "scoring method")


def requester() -> str:
    """Who asks for a background task, for its audit line (the task runs in another process)."""
    user = current_user()
    return user.username if user is not None else "anonymous (sign-in off)"


def check_training(app: Any, arguments: Dict[str, Any]) -> None:
    """``POST /train/{model}``: the trainer must exist and accept the options, before training starts."""
    require_small_json(arguments.get("params") or {}, "The training options")
    params = dict(arguments.get("params") or {}, requested_by=requester())  # never the client's own claim
    app.check_train_request({"model": arguments.get("model"), **params})
    arguments["params"] = params


def check_all_training(app: Any, arguments: Dict[str, Any]) -> None:
    params = arguments.get("params") or {}
    require_small_json(params, "The training options")
    per_name_options(params, app.task_names("trainer"), "trainer")
    params = {model: dict(params.get(model) or {}, requested_by=requester()) for model in app.task_names("trainer")}
    for model, options in params.items():
        app.check_train_request({"model": model, **options})
    arguments["params"] = params


def require_batch_model(app: Any, model: Any) -> str:
    """A model batch inference can run: one that needs no prompts (a click or box per image)."""
    name = app.require_task("model", model)
    batch = app.batch_models()
    if name not in batch:
        raise InvalidRequestError(
            f"Model '{name}' needs prompts (clicks or a box) for each image, which batch inference has none of; "
            f"batch inference runs {', '.join(batch) or 'no model on this server'}."
        )
    return name


def batch_devices(request: Mapping[str, Any]) -> Dict[str, Any]:
    """What a batch request needs changed so MONAI Label can place it: with ``multi_gpu`` (its default) it
    spreads images over one ``cuda:<n>`` per GPU, and with none it divided by zero (a 500, or a background
    task that failed unseen). Without a GPU the batch runs on the CPU. (The MedicoSAM tasks run on the
    server's configured device whatever the request says.)"""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return {}
    return {"multi_gpu": False, "device": "cpu"}


def check_batch_infer(app: Any, arguments: Dict[str, Any]) -> None:
    """``POST /batch/infer/{model}``: a model that runs without prompts, bounded options, label_tag a plain
    name other than ``final``, images a set name or known image ids; and devices that exist here."""
    params = dict(arguments.get("params") or {})
    require_small_json(params, "The batch inference request's body")
    require_batch_model(app, params.get("model", arguments.get("model")))
    check_json_values(params, "body")
    params["label_tag"] = inference_label_tag(params.get("label_tag"))
    images = params.get("images", arguments.get("images"))
    images = getattr(images, "value", images)
    if isinstance(images, list):
        for position, image in enumerate(images):
            require_known_image(app, image, f"images[{position}]")
    elif images is not None and images not in BATCH_IMAGE_SETS:
        raise InvalidRequestError(
            f"'images' must be one of {', '.join(BATCH_IMAGE_SETS)} or a list of image ids, got {shortened_repr(images)}."
        )
    for key in ("max_workers", "max_batch_size"):
        if params.get(key) is not None:
            params[key] = parse_int(params[key], key, minimum=0, maximum=1_000_000)
    for key in ("multi_gpu", "save_label"):
        if params.get(key) is not None:
            params[key] = parse_bool(params[key], key)
    gpus = params.get("gpus")
    if gpus is not None and not (isinstance(gpus, str) and re.fullmatch(r"all|\d+(,\d+)*", gpus.strip())):
        raise InvalidRequestError(f"'gpus' must be \"all\" or GPU numbers such as \"0,1\", got {shortened_repr(gpus)}.")
    params.update(batch_devices(params))
    arguments["params"] = params


def check_session_upload(app: Any, arguments: Dict[str, Any]) -> None:
    """``PUT /session/``: plain file names with contents, at most ``session_max_mb`` in all (an archive:
    unpacked), archives only if asked to unpack (one at a time) and safe to unpack, an expiry the server
    keeps. What the files hold is checked once stored (:func:`after_session_upload`)."""
    uploads = arguments.get("files") or []
    sessions = app.sessions()
    expiry = arguments.get("expiry")
    if sessions is not None and expiry is not None:
        longest = int(sessions.expiry)
        if isinstance(expiry, bool) or not isinstance(expiry, int) or not 0 <= expiry <= longest:
            raise InvalidRequestError(
                f"'expiry' must be a number of seconds between 0 and {longest} (0: the server's longest, "
                f"{longest} s), got {shortened_repr(expiry)}."
            )
    uncompress = arguments.get("uncompress")
    if uncompress and len(uploads) > 1:
        raise InvalidRequestError(
            f"uncompress=true takes one archive, got {len(uploads)} files: put them in one archive, or send them "
            "without uncompress."
        )
    limit = session_max_bytes(app)
    total = 0
    for upload in uploads:
        upload.filename = safe_upload_filename(upload.filename, "The session file's name")
        require_non_empty(upload, "session")
        total += check_archive(upload, limit) if uncompress else upload_size(upload)
    if total > limit:
        raise InvalidRequestError(
            f"The session's files are {_megabytes(total)}; a session takes at most {_megabytes(limit)} "
            "(session_max_mb).",
            status=413,
        )


def check_session_id(app: Any, arguments: Dict[str, Any]) -> None:
    """``GET``/``DELETE /session/{session_id}``: a plain id (MONAI Label joins it to a folder path), and
    the caller's own session."""
    if not SESSION_ID.fullmatch(arguments.get("session_id") or ""):
        raise InvalidRequestError(f"Session {shortened_repr(arguments.get('session_id'))} was not found.", status=404)
    sessions = app.sessions()
    if sessions is not None:
        require_session_owner(sessions, arguments["session_id"])


def check_session_read(app: Any, arguments: Dict[str, Any]) -> None:
    """``GET /session/{session_id}``: as :func:`check_session_id`, and a session made before its folder was
    resolved to one image (see :mod:`.session_images`) is resolved now (MONAI Label answered 500 for it)."""
    check_session_id(app, arguments)
    sessions = app.sessions()
    if sessions is not None:
        resolve_session_image(sessions, arguments["session_id"])


def check_image_info_read(app: Any, arguments: Dict[str, Any]) -> None:
    """``GET /datastore/image/info``: an image the datastore lists (MONAI Label answered ``{}`` for any id)."""
    require_known_image(app, arguments.get("image"))


def check_label_delete(app: Any, arguments: Dict[str, Any]) -> None:
    """``DELETE /datastore/label``: plain names, and a label that exists (MONAI Label answered 200 ``{}``)."""
    label_id = safe_name(arguments.get("id"), "The label id")
    tag = safe_name(arguments.get("tag"), "The label tag")
    store = app.datastore()
    if tag in (store.get_labels_by_image_id(label_id) or {}):
        return
    require_known_image(app, label_id, "id")
    raise InvalidRequestError(
        f"Image {label_id!r} has no label {tag!r}; GET /datastore/?output=all lists each image's labels.", status=404
    )


def check_label_read(app: Any, arguments: Dict[str, Any]) -> None:
    """``GET /datastore/label`` and its info: another annotator's label needs the reviewer role."""
    user = current_user()
    if user is None or user.role >= Role.REVIEWER:
        return
    label_id, tag = arguments.get("label"), arguments.get("tag")
    try:
        info = app.datastore().get_label_info(label_id, tag) or {}
    except Exception:  # noqa: BLE001 - an unknown label is the endpoint's 404 to give
        return
    owner = info.get("annotator")
    if owner and owner != user.username:
        raise InvalidRequestError(
            f"The label '{tag}' of '{label_id}' was saved by {owner!r}; reading another annotator's label needs the "
            f"reviewer role ({user.username!r} is {user.role.label}).",
            status=403,
        )


GUARDS: Dict[Tuple[str, str], Check] = {
    ("POST", "/infer/{model}"): check_infer,
    ("PUT", "/datastore/label"): check_label_save,
    ("GET", "/datastore/label"): check_label_read,
    ("GET", "/datastore/label/info"): check_label_read,
    ("GET", "/datastore/image/info"): check_image_info_read,
    ("DELETE", "/datastore/label"): check_label_delete,
    ("PUT", "/datastore/image"): check_image_upload,
    ("PUT", "/datastore/"): check_image_upload,
    ("PUT", "/datastore/image/info"): json_field_check("info"),
    ("PUT", "/datastore/label/info"): json_field_check("info"),
    ("PUT", "/datastore/updatelabelinfo"): json_field_check("params"),
    ("POST", "/activelearning/{strategy}"): check_strategy,
    ("POST", "/batch/infer/{model}"): check_batch_infer,
    ("POST", "/scoring/{method}"): check_scoring,
    ("POST", "/scoring/"): check_all_scoring,
    ("POST", "/train/{model}"): check_training,
    ("POST", "/train/"): check_all_training,
    ("PUT", "/session/"): check_session_upload,
    ("GET", "/session/{session_id}"): check_session_read,
    ("DELETE", "/session/{session_id}"): check_session_id,
}


# What runs after an endpoint answered, with its result.
AFTER: Dict[Tuple[str, str], Callable[[Any, Any], None]] = {("PUT", "/session/"): after_session_upload}


def guarded(
    endpoint: Callable[..., Any], check: Check, app_instance: Callable[[], Any],
    after: Optional[Callable[[Any, Any], None]] = None,
) -> Callable[..., Any]:
    """An ``async`` endpoint with ``endpoint``'s signature that runs ``check`` first and turns the
    client's mistakes, ours or MONAI Label's, into 4xx answers."""

    async def run(**arguments: Any) -> Any:
        with as_client_errors():
            check(app_instance(), arguments)
            result = await endpoint(**arguments)
            if after is not None:
                after(app_instance(), result)
            return result

    run.__signature__ = inspect.signature(endpoint)  # type: ignore[attr-defined]
    run.__name__ = endpoint.__name__
    run.__doc__ = endpoint.__doc__
    return run


def guard_requests(app: FastAPI, app_instance: Callable[[], Any]) -> int:
    """Put the checks of :data:`GUARDS` in front of the running server's endpoints; returns how many."""
    changed = 0
    for route, check in GUARDS.items():
        after = AFTER.get(route)
        changed += replace_endpoints(
            app, [route], lambda endpoint, check=check, after=after: guarded(endpoint, check, app_instance, after)
        )
    logger.info("Checking the requests of %d MONAI Label endpoints before they run", changed)
    return changed
