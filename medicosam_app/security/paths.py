"""Request values that become file or folder names (image ids, label tags, upload file names).

A client names an image or a tag; the datastore turns that name into ``labels/<tag>/<image><ext>``. Every
such value passes :func:`safe_name` (one plain path component, nothing that a file system, a URL decoder
or a second decoding step could read as "go elsewhere"), and the joined path passes :func:`confined_path`
(it resolves, symbolic links followed, to a place inside the folder it was meant for). Both refuse with an
:class:`UnsafePathError`, an HTTP 422 whose message says what is allowed.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..errors import InvalidRequestError

MAX_NAME_BYTES = 200  # leaves room for an extension inside the usual 255-byte limit of one file name
ALLOWED_NAME = (
    f"a plain name of 1 to {MAX_NAME_BYTES} bytes that does not start with '.' and contains no '..', "
    "'/', '\\', '%', NUL or other control characters (letters, digits, '-', '_', '.', spaces are fine)"
)
_EXTENSION = re.compile(r"(\.[A-Za-z0-9]{1,10}){1,3}")
ALLOWED_EXTENSION = "a file extension such as .nii.gz, .nii, .nrrd or .dcm (letters and digits after each '.')"
# Control characters, including NUL and DEL: no legitimate id holds one, and some APIs stop at NUL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafePathError(InvalidRequestError):
    """A request value that would name a file outside its folder, or that is no usable file name."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=422)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def safe_name(value: Any, what: str) -> str:
    """``value`` if it can be used as one file or folder name as it is; else :class:`UnsafePathError`.

    Refused: non-strings, empty or over-long values, path separators of any system, ``..`` (also inside a
    name, so no later split can produce it), a leading ``.`` (hidden files, and the datastore's own
    ``.lock`` and ``.saving_*`` temporary files), ``%`` (a percent-encoded ``%2e%2e%2f`` would be traversal to
    anything that decodes it once more), NUL and control characters."""
    problem = None
    if not isinstance(value, str):
        problem = "it is not text"
    elif not value:
        problem = "it is empty"
    elif len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problem = "it is too long"
    elif _CONTROL.search(value):
        problem = "it contains a control character"
    elif "/" in value or "\\" in value:
        problem = "it contains a path separator"
    elif ".." in value:
        problem = "it contains '..'"
    elif value.startswith("."):
        problem = "it starts with '.'"
    elif "%" in value:
        problem = "it contains '%' (percent-encoded characters are not decoded again)"
    elif os.path.isabs(value):  # cannot happen after the separator check; kept so the rule reads complete
        problem = "it is an absolute path"
    if problem:
        raise UnsafePathError(f"{what} {_shown(value)} is refused because {problem}: use {ALLOWED_NAME}.")
    return value


def safe_extension(value: Any, what: str = "the file's extension") -> str:
    """A file extension such as ``.nii.gz`` (one to three parts of letters and digits)."""
    if not isinstance(value, str) or not _EXTENSION.fullmatch(value):
        raise UnsafePathError(f"{what} {_shown(value)} is refused: use {ALLOWED_EXTENSION}.")
    return value


def confined_path(folder: "os.PathLike[str] | str", *names: str) -> str:
    """``folder/names...`` if it stays inside ``folder``; else :class:`UnsafePathError`.

    The folder the last name lives in must resolve (symbolic links followed) inside the resolved ``folder``,
    and so must the entry itself if it is a link. The path returned is the resolved parent joined with the
    last name: renaming onto it replaces that entry, never a file a link points to."""
    if not names:
        raise ValueError("confined_path needs at least one name below the folder")
    root = os.path.realpath(folder)
    joined = os.path.join(root, *names)
    parent = os.path.realpath(os.path.dirname(joined))
    target = os.path.join(parent, os.path.basename(joined))
    for candidate in (parent, os.path.realpath(target)):
        if candidate != root and os.path.commonpath([root, candidate]) != root:
            raise UnsafePathError(
                f"{os.path.join(*names)!r} would lead outside the datastore folder: use names of files inside it."
            )
    if os.path.basename(joined) in ("", ".", ".."):
        raise UnsafePathError(f"{os.path.join(*names)!r} names no file: use {ALLOWED_NAME}.")
    return target


def safe_upload_filename(value: Any, what: str = "The uploaded file's name") -> Any:
    """The file name of a multipart upload reduced to its last component, which must be a plain name;
    absent (None or "") stays absent, and the server picks a name.

    Clients send a *local* path here: MONAI Label's own client, which 3D Slicer's module uses, sends the
    full path of its temporary file (``C:\\Users\\...\\label.nrrd`` on Windows). That path says nothing
    about where the server stores the file, so it is cut at the last ``/`` or ``\\``; what is left is
    checked like any name (``..``, ``%``, a leading ``.``, control characters are refused), because MONAI
    Label takes the image id and the extension from it."""
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        return safe_name(value, what)
    return safe_name(re.split(r"[\\/]", value)[-1], what)
