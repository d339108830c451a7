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
import logging
import re
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from fastapi import FastAPI

from medicosam_app.atomic_files import write_bytes_atomic
from medicosam_app.errors import InvalidRequestError
from medicosam_app.request_values import parse_int, parse_json_object, parse_text, shortened_repr
from medicosam_app.security.paths import safe_upload_filename
from medicosam_app.security.users import Role

from .http_errors import as_client_errors
from .request_context import current_user
from .responsive_server import replace_endpoints

logger = logging.getLogger(__name__)

# check(app, the endpoint's arguments by name): raises InvalidRequestError (or HTTPException) to refuse.
Check = Callable[[Any, Dict[str, Any]], None]

# Keys MONAI Label's server sets in an inference request itself; a client that sends them in ``params``
# could point the model at a file outside the datastore.
SERVER_SET_KEYS = ("session", "image_id")
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # MONAI Label's session ids are UUIDs


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


def check_label_info(value: Any) -> None:
    """``label_info`` as Slicer sends it: ``[{"name": "liver", "idx": 1}, ...]`` (other keys are kept)."""
    if value is None:
        return
    if not isinstance(value, list):
        raise InvalidRequestError(
            f"'label_info' must be a list such as [{{\"name\": \"liver\", \"idx\": 1}}], got {shortened_repr(value)}."
        )
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


def archive_format(filename: str) -> Optional[str]:
    """The shutil archive format a file name says (``zip``, ``gztar`` ...), or None."""
    name = filename.lower()
    for format_name, extensions, _ in shutil.get_unpack_formats():
        if any(name.endswith(extension) for extension in extensions):
            return format_name
    return None


def check_archive(upload: Any) -> None:
    """An archive MONAI Label will unpack: readable, and every member stays inside the unpack folder (a
    tar member named ``../x`` or ``/etc/x`` would be written outside it on Python 3.11)."""
    filename = upload.filename or ""
    format_name = archive_format(filename)
    if format_name is None:
        known = ", ".join(e for _, extensions, _ in shutil.get_unpack_formats() for e in extensions)
        raise InvalidRequestError(f"uncompress=true needs an archive ({known}); '{filename}' is none of those.")
    stream = upload.file
    try:
        if format_name == "zip":
            with zipfile.ZipFile(stream) as archive:
                names = archive.namelist()
        else:
            with tarfile.open(fileobj=stream, mode="r:*") as archive:
                members = archive.getmembers()
                if any(not (m.isfile() or m.isdir()) for m in members):
                    raise InvalidRequestError(f"The archive '{filename}' holds links or devices: send only files.")
                names = [m.name for m in members]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise InvalidRequestError(f"'{filename}' cannot be read as a {format_name} archive: {error}.") from None
    finally:
        stream.seek(0)
    for name in names:
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts:
            raise InvalidRequestError(f"The archive '{filename}' has a member outside its folder: {name!r}.")


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
    """``POST /activelearning/{strategy}``; ``params`` may name another strategy, which is the one used."""
    params = arguments.get("params") or {}
    app.require_task("strategy", params.get("strategy", arguments.get("strategy")))


def check_scoring(app: Any, arguments: Dict[str, Any]) -> None:
    """``POST /scoring/{method}``: the method must exist before the background task is started."""
    params = arguments.get("params") or {}
    app.require_task("scoring method", params.get("method", arguments.get("method")))


def check_all_scoring(app: Any, arguments: Dict[str, Any]) -> None:
    per_name_options(arguments.get("params"), app.task_names("scoring method"), "scoring method")


def requester() -> str:
    """Who asks for a background task, for its audit line (the task runs in another process)."""
    user = current_user()
    return user.username if user is not None else "anonymous (sign-in off)"


def check_training(app: Any, arguments: Dict[str, Any]) -> None:
    """``POST /train/{model}``: the trainer must exist and accept the options, before training starts."""
    params = dict(arguments.get("params") or {}, requested_by=requester())  # never the client's own claim
    app.check_train_request({"model": arguments.get("model"), **params})
    arguments["params"] = params


def check_all_training(app: Any, arguments: Dict[str, Any]) -> None:
    params = arguments.get("params") or {}
    per_name_options(params, app.task_names("trainer"), "trainer")
    params = {model: dict(params.get(model) or {}, requested_by=requester()) for model in app.task_names("trainer")}
    for model, options in params.items():
        app.check_train_request({"model": model, **options})
    arguments["params"] = params


def check_session_upload(app: Any, arguments: Dict[str, Any]) -> None:
    """``PUT /session/``: files with contents; archives only if asked to unpack, and safe to unpack."""
    for upload in arguments.get("files") or []:
        require_non_empty(upload, "session")
        if arguments.get("uncompress"):
            check_archive(upload)


def check_session_id(app: Any, arguments: Dict[str, Any]) -> None:
    """``GET``/``DELETE /session/{session_id}``: a plain id (MONAI Label joins it to a folder path), and
    the caller's own session."""
    if not SESSION_ID.fullmatch(arguments.get("session_id") or ""):
        raise InvalidRequestError(f"Session {shortened_repr(arguments.get('session_id'))} was not found.", status=404)
    sessions = app.sessions()
    if sessions is not None:
        require_session_owner(sessions, arguments["session_id"])


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
    ("PUT", "/datastore/image"): check_image_upload,
    ("PUT", "/datastore/"): check_image_upload,
    ("PUT", "/datastore/image/info"): json_field_check("info"),
    ("PUT", "/datastore/label/info"): json_field_check("info"),
    ("PUT", "/datastore/updatelabelinfo"): json_field_check("params"),
    ("POST", "/activelearning/{strategy}"): check_strategy,
    ("POST", "/scoring/{method}"): check_scoring,
    ("POST", "/scoring/"): check_all_scoring,
    ("POST", "/train/{model}"): check_training,
    ("POST", "/train/"): check_all_training,
    ("PUT", "/session/"): check_session_upload,
    ("GET", "/session/{session_id}"): check_session_id,
    ("DELETE", "/session/{session_id}"): check_session_id,
}


# What runs after an endpoint answered, with its result.
AFTER: Dict[Tuple[str, str], Callable[[Any, Any], None]] = {("PUT", "/session/"): record_session_owner}


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
