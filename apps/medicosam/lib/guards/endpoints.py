"""Every malformed request gets a 4xx whose message says what to fix, before MONAI Label's endpoint runs.

MONAI Label 0.8.5 answers many client mistakes with a 500: ``params`` that is not a JSON object, an
unknown model or strategy, a missing image. Training and scoring requests for an unknown name or with
bad options are even accepted (200) and fail later in a background process the client never hears from.
Each endpoint whose row of the route table names a check (``guard``, resolved in :data:`.table.CHECKS`) is
rebuilt at start-up around a check of its arguments, run first, and MONAI Label's own exceptions are translated
on the way out (see :func:`.http_errors.as_client_errors`). Valid requests pass unchanged: the protocol the
Slicer and OHIF clients speak stays the same.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping

from medicosam_app.api import (
    BatchInferRequest,
    InferenceFields,
    LabelSaveParams,
    NextSampleRequest,
    read_label_info,
    require_small_json,
)
from medicosam_app.errors import InvalidRequestError
from medicosam_app.request_values import parse_json_object, shortened_repr
from medicosam_app.security.paths import safe_name, safe_upload_filename

from ..access.request_context import current_user, may_act_for_others, role_for_others
from ..datastore.session_images import resolve_session_image

from .sessions import check_archive, check_session, megabytes, require_session_owner, session_max_bytes
from .values import (
    SERVER_SET_KEYS,
    SESSION_ID,
    Check,
    per_name_options,
    require_image_id,
    require_known_image,
    require_non_empty,
    upload_size,
)

logger = logging.getLogger(__name__)

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
    # The task reads the request with the same model (every one reads save_label, label_tag, timeout): a bad value
    # is refused here, before any work.
    request_model = app.request_model(params.get("model", arguments.get("model"))) or InferenceFields
    request_model.read({**params, "image": arguments.get("image") or session_id})
    if getattr(arguments.get("output"), "value", arguments.get("output")) == "dicom_seg":
        from monailabel.datastore.dicom import DICOMWebDatastore

        if not isinstance(app.datastore(), DICOMWebDatastore):
            raise InvalidRequestError("output=dicom_seg needs a DICOMweb datastore; use output=image or all here.")
        if params.get("label_info") is None:
            raise InvalidRequestError("output=dicom_seg needs 'label_info' in params to name the segments.")
        read_label_info(params["label_info"])


def check_label_save(app: Any, arguments: Dict[str, Any]) -> None:
    """``PUT /datastore/label``: an image id, params a JSON object with a well-formed label_info, a file."""
    require_image_id(arguments.get("image"))
    LabelSaveParams.read(parse_json_object(arguments.get("params"), "params"))
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
    """``POST /activelearning/{strategy}``: the body read by :class:`NextSampleRequest`; ``params`` may name another
    strategy, which is the one used. With sign-in on, the signed-in user's name is recorded as ``client_id``, not
    what the client claims."""
    params = dict(arguments.get("params") or {})
    asked = NextSampleRequest.read(params)
    app.require_task("strategy", asked.strategy or arguments.get("strategy"))
    params.pop("client_id", None)
    params.update(asked.model_dump(include={"client_id", "label_tag", "labels"}, exclude_none=True))
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
    """``POST /batch/infer/{model}``: the body read by :class:`BatchInferRequest` (label_tag a plain name other than
    ``final``, images a set name or image ids, bounded options), a model that runs without prompts, images the
    datastore knows, and devices that exist here."""
    params = dict(arguments.get("params") or {})
    images = params.get("images", arguments.get("images"))
    asked = BatchInferRequest.read({**params, "images": images})
    require_batch_model(app, params.get("model", arguments.get("model")))
    if isinstance(asked.images, list):
        for position, image in enumerate(asked.images):
            require_known_image(app, image, f"images[{position}]")
    params.update(asked.model_dump(exclude={"images"}, exclude_none=True))
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
            f"The session's files are {megabytes(total)}; a session takes at most {megabytes(limit)} "
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
    resolved to one image (see :mod:`lib.datastore.session_images`) is resolved now (MONAI Label answered 500 for it)."""
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
    if user is None or may_act_for_others():
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
            f"{role_for_others().label} role ({user.username!r} is {user.role.label}).",
            status=403,
        )


