"""Sessions (``PUT /session/``): who owns one, and an uploaded archive checked before it is unpacked."""

from __future__ import annotations

import logging
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Optional


from medicosam_app.atomic_files import write_bytes_atomic
from medicosam_app.errors import InvalidRequestError
from medicosam_app.request_values import (
    shortened_repr,
)

from ..access.request_context import current_user, may_act_for_others
from ..datastore.session_images import resolve_session_image

from .values import DEFAULT_SESSION_MAX_BYTES, MAX_ARCHIVE_MEMBERS, SESSION_ID

logger = logging.getLogger(__name__)

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
    is not recorded (made with sign-in off) is an admin's only. Who else may use it is the route table's
    ``others`` column."""
    user = current_user()
    if user is None or may_act_for_others():
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


def megabytes(size: int) -> str:
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
            f"The archive '{filename}' unpacks to {megabytes(unpacked)}; a session takes at most "
            f"{megabytes(max_bytes)} (session_max_mb). Send the image alone, or a smaller archive.",
            status=413,
        )
    return unpacked


