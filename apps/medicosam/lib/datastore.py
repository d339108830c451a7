"""The local datastore: label saves checked against the image, names from requests confined to the
datastore folder, and an index (``datastore_v2.json``) that no crash and no other process can corrupt or
roll back.

MONAI Label's ``LocalDatastore`` keeps the index in memory and rewrites the whole file in place after each
change. Two things lose data that way:

- a process killed during the rewrite leaves a truncated index, and the server then refuses to start;
- ``POST /train`` and ``POST /scoring`` run in separate processes that build their own app and datastore
  from the index as it was when they started. When scoring records a Dice score it wrote that old copy
  back, and every label saved by the server in the meantime vanished from the index.

Here every change is made under the datastore's file lock on the index as it is on disk *now*: read it,
apply only this change, write it atomically (temporary file, fsync, rename, fsync of the folder). Label
and image files are written the same way before the index names them, so an answered save is on disk in
full. The training and scoring processes build their datastore through the same app (``main.py``'s
``init_datastore``), so they follow the same rules.

A label is decoded whole and checked before anything is written (``medicosam_app/geometry/label_check.py``:
complete, one whole class number per voxel, on the image's grid). A saved label replaces any file of the same id and
tag in another format, so a rebuilt index cannot bring an older one back.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from fastapi import HTTPException
from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore, LocalDatastoreModel
from monailabel.interfaces.exception import ImageNotFoundException, LabelNotFoundException

from medicosam_app.atomic_files import (
    copy_file_atomic,
    fsync_directory,
    make_folders_durably,
    restored_if_failed,
    storage_full_as,
    write_bytes_atomic,
)
from medicosam_app.errors import ImageReadError, InvalidRequestError
from medicosam_app.geometry.label_check import GEOMETRY_FORMATS, Grid, on_image_grid, read_checked_label
from medicosam_app.security.audit import label_summary
from medicosam_app.security.paths import UnsafePathError, confined_path, safe_extension, safe_name
from medicosam_app.security.users import Role

from .request_context import add_audit_details, current_user
from .served_images import served_image

logger = logging.getLogger(__name__)

# Prefix of the temporary copy of a label or image being saved; the datastore's extensions never match it.
SAVING_PREFIX = ".saving_"
ANNOTATOR = "annotator"  # the label info key naming who saved a label

IndexStamp = Tuple[int, int, int, int]


# -- names from requests --------------------------------------------------------------------------


@contextlib.contextmanager
def refused_as_422() -> Iterator[None]:
    """An unsafe name or a label that fails its checks is the client's mistake: HTTP 422 with what to fix,
    whoever calls the datastore."""
    try:
        yield
    except UnsafePathError as error:
        logger.warning("Refused a datastore path: %s", error)
        raise HTTPException(422, str(error)) from error
    except InvalidRequestError as error:
        logger.info("Refused a label: %s", error)
        raise HTTPException(error.status, str(error)) from None


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


# -- the index on disk ----------------------------------------------------------------------------


def index_lock(store: LocalDatastore) -> FileLock:
    """The lock every process takes to change this datastore (the one MONAI Label's code uses too)."""
    return getattr(store, "_index_lock", None) or FileLock(store._lock_file)


def index_stamp(path: str) -> Optional[IndexStamp]:
    """What changes whenever the index file is replaced: a rename gives it a new inode and change time."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns


def parse_index(store: LocalDatastore, text: str) -> LocalDatastoreModel:
    model = LocalDatastoreModel.model_validate_json(text)
    model.base_path = store._datastore_path
    return model


def empty_index(store: LocalDatastore) -> LocalDatastoreModel:
    """A new index with the folders the datastore was configured with."""
    current = getattr(store, "_datastore", None)
    model = LocalDatastoreModel(
        name="new-dataset",
        description="New Dataset",
        images_dir=getattr(current, "images_dir", "."),
        labels_dir=getattr(current, "labels_dir", "labels"),
    )
    model.base_path = store._datastore_path
    return model


def read_index(store: LocalDatastore) -> LocalDatastoreModel:
    """The index as it is on disk (empty if there is none yet); call with the lock held.

    An index that does not parse (written by an older version that rewrote it in place and was killed, or
    edited by hand) is set aside as ``datastore_v2.json.unreadable-<time>-<pid>`` and rebuilt at once from
    the image and label files, which are the data: the server starts with every label; only the extra
    info that file held is lost."""
    path = store._datastore_config_path
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return empty_index(store)
    try:
        return parse_index(store, text)
    except ValueError as error:
        aside = f"{path}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.replace(path, aside)
        logger.error("The datastore index %s does not parse (%s); kept as %s and rebuilt from the files on disk",
                     path, str(error).splitlines()[0], aside)
        model = empty_index(store)
        reconcile_index(store, model)
        write_index(store, model)
        return model


def write_index(store: LocalDatastore, model: LocalDatastoreModel) -> None:
    """Replace the index with ``model`` in one step; call with the lock held."""
    text = json.dumps(model.model_dump(exclude={"base_path"}), indent=2, default=str)
    write_bytes_atomic(store._datastore_config_path, text.encode("utf-8"))


def adopt_index(store: LocalDatastore, model: LocalDatastoreModel) -> None:
    """Make ``model`` (just read or written) the process's copy."""
    adopt = getattr(store, "_adopt", None)
    if adopt is not None:
        adopt(model)
        return
    store._datastore = model
    store._config_ts = os.stat(store._datastore_config_path).st_mtime  # so MONAI Label does not re-read it


@contextlib.contextmanager
def editing_index(store: LocalDatastore) -> Iterator[LocalDatastoreModel]:
    """Change the index as it is on disk now, under the lock: ``with editing_index(store) as index: ...``.

    The block changes ``index`` (and may write files first); on leaving it the index is written atomically
    and becomes this process's copy. If the block raises, the index on disk stays as it was."""
    with index_lock(store):
        model = read_index(store)
        yield model
        write_index(store, model)
        adopt_index(store, model)


def reconcile_index(store: LocalDatastore, model: LocalDatastoreModel) -> int:
    """Bring ``model`` in line with the files on disk; returns the number of entries changed."""
    changes = 0
    image_folder = model.image_path()
    for image_id, entry in list(model.objects.items()):
        if not os.path.exists(os.path.join(image_folder, store._filename(image_id, entry.image.ext))):
            logger.info("Dropping image %s from the index: its file is gone", image_id)
            del model.objects[image_id]
            changes += 1
            continue
        for tag, label in list(entry.labels.items()):
            if not os.path.exists(os.path.join(model.label_path(tag), store._filename(image_id, label.ext))):
                logger.info("Dropping label %s (%s) from the index: its file is gone", image_id, tag)
                del entry.labels[tag]
                changes += 1

    if os.path.isdir(image_folder):
        for file in store._list_files(image_folder, store._extensions):
            image_id, ext = store._to_id(file)
            if image_id not in model.objects:
                info = {"ts": int(time.time()), "name": store._filename(image_id, ext)}
                model.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
                changes += 1

    labels_root = model.label_path(None)
    tags = sorted(t for t in os.listdir(labels_root) if os.path.isdir(os.path.join(labels_root, t))) \
        if os.path.isdir(labels_root) else []
    for tag in tags:
        for label_id, ext in newest_label_files(store, model.label_path(tag)).items():
            entry = model.objects.get(label_id)
            if entry is not None and tag not in entry.labels:
                info = {"ts": int(time.time()), "name": store._filename(label_id, ext)}
                entry.labels[tag] = DataModel(info=info, ext=ext)
                changes += 1
    return changes


def newest_label_files(store: LocalDatastore, folder: str) -> Dict[str, str]:
    """Label id → extension of its newest file (modification time) in ``folder``: a label saved in one
    format and later in another (``.nii.gz``, then ``.nrrd``) may have left both, and the later one is the
    annotator's last word. On equal times the first of the datastore's extensions wins."""
    newest: Dict[str, Tuple[int, int, str]] = {}
    for order, file in enumerate(store._list_files(folder, store._extensions)):
        label_id, ext = store._to_id(file)
        try:
            modified = os.stat(os.path.join(folder, file)).st_mtime_ns
        except FileNotFoundError:
            continue
        if label_id not in newest or (modified, -order) > newest[label_id][:2]:
            newest[label_id] = (modified, -order, ext)
    return {label_id: ext for label_id, (_, _, ext) in newest.items()}


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
        raise HTTPException(404, f"Image '{image_id}' is not in the datastore; list images with GET /datastore/.")
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
                raise HTTPException(
                    404, f"Image '{image_id}' is not in the datastore; list images with GET /datastore/."
                )
            image_path = os.path.join(index.image_path(), store._filename(image_id, entry.image.ext))
            source = label_filename
            if os.path.isfile(image_path):
                try:
                    image = Grid.of_image(image_path)
                except (RuntimeError, ImageReadError):
                    raise HTTPException(
                        422, f"Image '{image_id}' in the datastore cannot be read: no label can be checked against it.",
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
                _remove_durably(older)
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
    if owner and owner != user.username and user.role < Role.REVIEWER:
        raise HTTPException(
            403, f"The label '{tag}' of this image was saved by {owner!r}; replacing another annotator's label needs "
            f"the reviewer role ({user.username!r} is {user.role.label}). Save it under another tag.",
        )
    return user.username


def audit_saved_label(image_id: str, tag: str, array: np.ndarray) -> None:
    """The saved label's hash, voxel count and slice range (``array`` is [k, j, i]) for the request's audit line."""
    add_audit_details(image=image_id, task=f"label:{tag}", result=label_summary(array, axis=0))


def _remove_durably(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
        fsync_directory(os.path.dirname(path))


def _reading(method: Callable[..., Any]) -> Callable[..., Any]:
    """A read of MONAI Label's ``LocalDatastore`` that first picks up a newer index written by another
    process (a scoring run's Dice scores, say), so answers never lag behind the file."""

    @functools.wraps(method)
    def read(self: "CheckedLocalDatastore", *args: Any, **kwargs: Any) -> Any:
        self._reload_if_replaced()
        return method(self, *args, **kwargs)

    return read


class CheckedLocalDatastore(LocalDatastore):
    """MONAI Label's local datastore with every write atomic, merged into the index on disk, and confined.

    - ``save_label`` refuses unknown images, unsafe tags, and labels that are truncated or corrupt, not whole
      class numbers, of another size or on another grid (see :func:`store_label`);
    - ``add_image``, ``remove_image``, ``remove_label`` check the ids from the request and stay inside the
      datastore folder (HTTP 422 otherwise);
    - each change re-reads the index under the lock and writes only its own change (training and scoring
      processes cannot roll back a label saved while they ran);
    - reads pick up an index another process replaced;
    - at start, temporary files of a save that was killed are removed (they are never listed).
    """

    def __init__(self, datastore_path: str, *args: Any, **kwargs: Any) -> None:
        # One lock object for the life of the datastore: reentrant in a thread, exclusive between threads
        # (filelock keeps its state per thread) and between processes (flock on the same .lock file).
        self._index_lock = FileLock(os.path.join(datastore_path, ".lock"))
        self._memory_lock = threading.RLock()
        self._index_model: Optional[LocalDatastoreModel] = None
        self._index_stamp: Optional[IndexStamp] = None
        self._loaded: Dict[str, Any] = {}
        super().__init__(datastore_path, *args, **kwargs)
        if not kwargs.get("read_only"):
            self.remove_unfinished_saves()
        labels = sum(len(entry.labels) for entry in self._index_model.objects.values())
        # Training and scoring processes log this too: the moment their copy of the index was read.
        logger.info("Datastore index read: %d images, %d labels (%s)", len(self._index_model.objects), labels,
                    self._datastore_config_path)

    # The process's copy of the index. MONAI Label's code reads and assigns ``self._datastore``.
    @property
    def _datastore(self) -> LocalDatastoreModel:
        return self._index_model

    @_datastore.setter
    def _datastore(self, model: LocalDatastoreModel) -> None:
        self._index_model = model

    def _adopt(self, model: LocalDatastoreModel) -> None:
        with self._memory_lock:
            self._index_model = model
            self._index_stamp = index_stamp(self._datastore_config_path)
            self._loaded = model.model_dump(exclude={"base_path"})
            self._config_ts = os.stat(self._datastore_config_path).st_mtime if self._index_stamp else 0

    def _reload_if_replaced(self) -> None:
        """Take the index from disk if another process replaced it. No lock needed: the file is only ever
        replaced whole, so it is always complete."""
        with self._memory_lock:
            stamp = index_stamp(self._datastore_config_path)
            if stamp is None or stamp == self._index_stamp:
                return
            try:
                with open(self._datastore_config_path, encoding="utf-8") as f:
                    model = parse_index(self, f.read())
            except (OSError, ValueError) as error:  # set aside under the lock by the next change
                logger.warning("Could not re-read the datastore index: %s", error)
                return
            self._adopt(model)

    # -- MONAI Label's hooks for the index file -------------------------------------------------------

    def _init_from_datastore_file(self, throw_exception: bool = False) -> None:
        with self._index_lock:
            if self._index_stamp is None or index_stamp(self._datastore_config_path) != self._index_stamp:
                self._adopt(read_index(self))

    def _update_datastore_file(self, lock: bool = True) -> None:
        """For code that changed this process's copy in place and asks to save it (none of MONAI Label 0.8.5
        does once the methods below are replaced): the entries that differ from the version this copy was
        read from are written into the index as it is on disk, never the whole stale copy."""
        with editing_index(self) as index:
            apply_changes(self._loaded, self._index_model.model_dump(exclude={"base_path"}), index)

    def _reconcile_datastore(self) -> None:
        with self._index_lock:
            index = read_index(self)
            if reconcile_index(self, index):
                write_index(self, index)
            self._adopt(index)

    def remove_unfinished_saves(self) -> int:
        """Delete the temporary files of saves that were killed; returns how many.

        Every such file is created and renamed under the index lock, so a file found while holding it
        belongs to a writer that died."""
        folders = [self._datastore_path, self._datastore.image_path()]
        labels_root = self._datastore.label_path(None)
        if os.path.isdir(labels_root):
            folders += [os.path.join(labels_root, t) for t in os.listdir(labels_root)]
        index_name = os.path.basename(self._datastore_config_path)
        removed = 0
        with self._index_lock:
            for folder in folders:
                patterns = [f"{SAVING_PREFIX}*", f".{index_name}.*.part"]
                for pattern in patterns:
                    for path in glob.glob(os.path.join(glob.escape(folder), pattern)):
                        if os.path.isfile(path) and not os.path.islink(path):
                            os.remove(path)
                            removed += 1
        if removed:
            logger.warning("Removed %d temporary file(s) of saves that did not finish", removed)
        return removed

    # -- changes ------------------------------------------------------------------------------------

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        return store_label(self, image_id, label_filename, label_tag, label_info)

    def add_image(self, image_id: str, image_filename: str, image_info: Dict[str, Any]) -> str:
        """``PUT /datastore/image``: the id (from the request, or the uploaded file's name) must be a plain
        name. An image that replaces one with the same id keeps its labels, as a restart would list them."""
        default_id, ext = self._to_id(os.path.basename(image_filename))
        image_id = image_id or default_id
        destination = image_destination(self, self._datastore, image_id, ext)
        with index_lock(self), storage_full_as(f"Image '{image_id}' was not added", destination), \
                restored_if_failed(destination, SAVING_PREFIX), editing_index(self) as index:
            make_folders_durably(os.path.dirname(destination))
            copy_file_atomic(image_filename, destination, temporary_prefix=SAVING_PREFIX)
            info = dict(image_info or {})
            info.update({"ts": int(time.time()), "name": os.path.basename(destination)})
            labels = index.objects[image_id].labels if image_id in index.objects else {}
            index.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext), labels=labels)
        logger.info("Added image %s", image_id)
        return image_id

    def remove_image(self, image_id: str) -> None:
        with refused_as_422():
            safe_name(image_id, "The image id")
        with editing_index(self) as index:
            entry = index.objects.get(image_id)
            if entry is None:
                raise HTTPException(404, f"Image '{image_id}' is not in the datastore; GET /datastore/ lists them.")
            for tag, label in entry.labels.items():
                _remove_durably(label_destination(self, index, image_id, tag, label.ext))
            _remove_durably(image_destination(self, index, image_id, entry.image.ext))
            del index.objects[image_id]
        logger.info("Removed image %s and its labels", image_id)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        with refused_as_422():
            safe_name(label_id, "The label id")
            safe_name(label_tag, "The label tag")
        with editing_index(self) as index:
            entry = index.objects.get(label_id)
            label = entry.labels.get(label_tag) if entry else None
            if label is None:
                return  # as MONAI Label: removing what is not there is no error
            _remove_durably(label_destination(self, index, label_id, label_tag, label.ext))
            del entry.labels[label_tag]
        logger.info("Removed label %s (%s)", label_id, label_tag)

    def update_image_info(self, image_id: str, info: Dict[str, Any]) -> None:
        with editing_index(self) as index:
            entry = index.objects.get(image_id)
            if entry is None:
                raise ImageNotFoundException(f"Image {image_id} not found")
            entry.image.info.update(info)

    def update_label_info(self, label_id: str, label_tag: str, info: Dict[str, Any]) -> None:
        with editing_index(self) as index:
            label = index.label(label_id, label_tag)
            if label is None:
                raise LabelNotFoundException(f"Label: {label_id} Tag: {label_tag} not found")
            label.info.update(info)

    def set_name(self, name: str) -> None:
        with editing_index(self) as index:
            index.name = name

    def set_description(self, description: str) -> None:
        with editing_index(self) as index:
            index.description = description

    # -- reads --------------------------------------------------------------------------------------

    json = _reading(LocalDatastore.json)
    status = _reading(LocalDatastore.status)
    datalist = _reading(LocalDatastore.datalist)
    list_images = _reading(LocalDatastore.list_images)
    get_labeled_images = _reading(LocalDatastore.get_labeled_images)
    get_unlabeled_images = _reading(LocalDatastore.get_unlabeled_images)
    _image_file = _reading(LocalDatastore.get_image_uri)

    def get_image_uri(self, image_id: str) -> str:
        """The image file, or for a DICOM file the NRRD the server reads it as (:mod:`.served_images`)."""
        return served_image(self._image_file(image_id), self._datastore_path)
    get_image_info = _reading(LocalDatastore.get_image_info)
    get_label_uri = _reading(LocalDatastore.get_label_uri)
    get_label_info = _reading(LocalDatastore.get_label_info)
    get_labels_by_image_id = _reading(LocalDatastore.get_labels_by_image_id)


def apply_changes(before: Dict[str, Any], after: Dict[str, Any], index: LocalDatastoreModel) -> int:
    """Apply to ``index`` the entries (name, description, each image, each label) in which ``after``
    differs from ``before``; entries nobody touched keep what ``index`` has. Returns how many."""
    changes = 0
    for key in ("name", "description"):
        if after.get(key) != before.get(key):
            setattr(index, key, after.get(key))
            changes += 1
    before_objects, after_objects = before.get("objects", {}), after.get("objects", {})
    for image_id in set(before_objects) | set(after_objects):
        old, new = before_objects.get(image_id), after_objects.get(image_id)
        if new is None:
            changes += index.objects.pop(image_id, None) is not None
            continue
        if old is None or new["image"] != old["image"] or image_id not in index.objects:
            labels = index.objects[image_id].labels if image_id in index.objects else {}
            index.objects[image_id] = ImageLabelModel(image=DataModel(**new["image"]), labels=labels)
            changes += 1
        old_labels, new_labels = (old or {}).get("labels", {}), new.get("labels", {})
        labels = index.objects[image_id].labels
        for tag in set(old_labels) | set(new_labels):
            if tag not in new_labels:
                changes += labels.pop(tag, None) is not None
            elif new_labels[tag] != old_labels.get(tag):
                labels[tag] = DataModel(**new_labels[tag])
                changes += 1
    return changes
