"""Saving a label into the local datastore: the names a request gives confined to the datastore's folders, the
label checked against its image before anything is written, then the file and the index replaced together."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
from monailabel.datastore.local import DataModel, LocalDatastore, LocalDatastoreModel

from medicosam_app.atomic_files import (
    copy_file_atomic,
    fsync_directory,
    restored_if_failed,
    storage_full_as,
)
from medicosam_app.errors import ImageReadError, InvalidRequestError
from medicosam_app.geometry.label_check import GEOMETRY_FORMATS, Grid, on_image_grid, read_checked_label
from medicosam_app.security.audit_record import label_summary
from medicosam_app.security.paths import UnsafePathError, confined_path, safe_extension, safe_name

from ..access.request_context import add_audit_details, current_user, may_act_for_others, role_for_others


from .index import adopt_index, index_lock, read_index, write_index

logger = logging.getLogger(__name__)

# Prefix of the temporary copy of a label or image being saved; the datastore's extensions never match it.
SAVING_PREFIX = ".saving_"
ANNOTATOR = "annotator"  # the label info key naming who saved a label


# -- names from requests --------------------------------------------------------------------------


@contextlib.contextmanager
def refused_as_422() -> Iterator[None]:
    """An unsafe name or a label that fails its checks is the client's mistake (``InvalidRequestError``: a 4xx
    with what to fix, whoever calls the datastore); logged here, answered by the app's error handler."""
    try:
        yield
    except UnsafePathError as error:
        logger.warning("Refused a datastore path: %s", error)
        raise
    except InvalidRequestError as error:
        logger.info("Refused a label: %s", error)
        raise


def _relative_folder(store: LocalDatastore, folder: str) -> str:
    return os.path.relpath(folder, store._datastore_path)


def label_destination(store: LocalDatastore, model: LocalDatastoreModel, image_id: str, tag: str, ext: str) -> str:
    """Where the label ``tag`` of ``image_id`` lives: checked names, confined to the datastore folder."""
    with refused_as_422():
        safe_name(image_id, "The image id")
        safe_name(tag, "The label tag")
        safe_extension(ext, "The label file's extension")
        folder = _relative_folder(store, model.label_path(tag))
        return confined_path(store._datastore_path, folder, store._filename(image_id, ext))


def image_destination(store: LocalDatastore, model: LocalDatastoreModel, image_id: str, ext: str) -> str:
    with refused_as_422():
        safe_name(image_id, "The image id")
        safe_extension(ext, "The image file's extension")
        folder = _relative_folder(store, model.image_path())
        return confined_path(store._datastore_path, folder, store._filename(image_id, ext))


# -- saving a label -------------------------------------------------------------------------------

def _other_formats(store: LocalDatastore, index: LocalDatastoreModel, image_id: str, tag: str, ext: str) -> List[str]:
    """The files of label ``image_id``/``tag`` in the datastore's other formats (a save in another format
    leaves them)."""
    extensions = {p[1:] for p in store._extensions if p.startswith("*.") and not any(c in p[1:] for c in "*?[")}
    extensions |= set(GEOMETRY_FORMATS)
    found = []
    for other in sorted(extensions - {ext}):
        with contextlib.suppress(UnsafePathError):
            path = confined_path(index.label_path(tag), store._filename(image_id, other))
            if store._to_id(os.path.basename(path)) == (image_id, other) and os.path.lexists(path):
                found.append(path)
    return found


def store_label(
    store: LocalDatastore, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]
) -> str:
    """Check a label against its image and save it: the file fsynced under its final name, then the index
    (as it is on disk, under the lock) updated and fsynced, then files of this label in other formats
    removed. When this returns, the save survives a crash.

    Nothing is written before the upload has been decoded whole and checked (:func:`read_checked_label`,
    :func:`on_image_grid`): a refused label leaves the saved one and the index as they were."""
    _, label_ext = store._to_id(os.path.basename(label_filename))
    getattr(store, "_reload_if_replaced", lambda: None)()
    if image_id not in store._datastore.objects:
        raise InvalidRequestError(
            f"Image '{image_id}' is not in the datastore; list images with GET /datastore/.", status=404
        )
    # Checked before anything is written: a bad tag must not even create a folder.
    label_destination(store, store._datastore, image_id, label_tag, label_ext)
    with refused_as_422():
        label = read_checked_label(label_filename)

    workspace = tempfile.mkdtemp(prefix="medicosam_label_")
    try:
        with index_lock(store):
            index = read_index(store)
            entry = index.objects.get(image_id)
            if entry is None:
                raise InvalidRequestError(
                    f"Image '{image_id}' is not in the datastore; list images with GET /datastore/.", status=404
                )
            image_path = os.path.join(index.image_path(), store._filename(image_id, entry.image.ext))
            source = label_filename
            if os.path.isfile(image_path):
                try:
                    image = Grid.of_image(image_path)
                except (RuntimeError, ImageReadError):
                    raise InvalidRequestError(
                        f"Image '{image_id}' in the datastore cannot be read: no label can be checked against it.",
                    ) from None
                with refused_as_422():
                    source = on_image_grid(label, image, image_id, label_ext, workspace) or label_filename
            annotator = label_annotator(entry.labels.get(label_tag), label_tag, label_info)
            destination = label_destination(store, index, image_id, label_tag, label_ext)
            with storage_full_as(f"Label '{label_tag}' of image '{image_id}' was not saved",
                                    destination), restored_if_failed(destination, SAVING_PREFIX):
                copy_file_atomic(source, destination, temporary_prefix=SAVING_PREFIX)
                info = dict(label_info or {})
                info.update({"ts": int(time.time()), "name": os.path.basename(destination), ANNOTATOR: annotator})
                entry.labels[label_tag] = DataModel(info=info, ext=label_ext)
                write_index(store, index)
            adopt_index(store, index)
            # Only now, with the new file and the index naming it on disk: an older save in another format
            # would otherwise come back when the index is rebuilt from the files.
            for older in _other_formats(store, index, image_id, label_tag, label_ext):
                logger.info("Removing %s: label %s (%s) is now saved as %s", os.path.basename(older), image_id,
                            label_tag, os.path.basename(destination))
                remove_durably(older)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    logger.info("Saved label %s for image %s (tag %s)", os.path.basename(destination), image_id, label_tag)
    audit_saved_label(image_id, label_tag, label.array)
    return image_id


def label_annotator(existing: Optional[DataModel], tag: str, label_info: Optional[Dict[str, Any]]) -> Optional[str]:
    """Who a saved label is recorded as made by: the signed-in user, never what the client claims (with
    sign-in off, its ``client_id``). Replacing another annotator's label needs the reviewer role."""
    user = current_user()
    if user is None:
        client = (label_info or {}).get("client_id")
        return client if isinstance(client, str) and client else None
    owner = existing.info.get(ANNOTATOR) if existing is not None else None
    if owner and owner != user.username and not may_act_for_others():
        raise InvalidRequestError(
            f"The label '{tag}' of this image was saved by {owner!r}; replacing another annotator's label needs "
            f"the {role_for_others().label} role ({user.username!r} is {user.role.label}). Save it under another tag.",
            status=403,
        )
    return user.username


def audit_saved_label(image_id: str, tag: str, array: np.ndarray) -> None:
    """The saved label's hash, voxel count and slice range (``array`` is [k, j, i]) for the request's audit line."""
    add_audit_details(image=image_id, task=f"label:{tag}", result=label_summary(array, axis=0))


def remove_durably(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
        fsync_directory(os.path.dirname(path))


