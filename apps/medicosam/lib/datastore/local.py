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

import functools
import glob
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Optional

from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore, LocalDatastoreModel
from monailabel.interfaces.exception import ImageNotFoundException, LabelNotFoundException

from medicosam_app.atomic_files import (
    copy_file_atomic,
    make_folders_durably,
    restored_if_failed,
    storage_full_as,
)
from medicosam_app.errors import InvalidRequestError
from medicosam_app.security.paths import safe_name

from .served_images import served_image

from .index import (
    IndexStamp,
    apply_changes,
    editing_index,
    index_lock,
    index_stamp,
    parse_index,
    read_index,
    reconcile_index,
    write_index,
)
from .label_store import (
    SAVING_PREFIX,
    remove_durably,
    image_destination,
    label_destination,
    refused_as_422,
    store_label,
)

logger = logging.getLogger(__name__)


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
                raise InvalidRequestError(
                    f"Image '{image_id}' is not in the datastore; GET /datastore/ lists them.", status=404
                )
            for tag, label in entry.labels.items():
                remove_durably(label_destination(self, index, image_id, tag, label.ext))
            remove_durably(image_destination(self, index, image_id, entry.image.ext))
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
            remove_durably(label_destination(self, index, label_id, label_tag, label.ext))
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
