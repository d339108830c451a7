"""The datastore's index (``datastore_v2.json``) on disk: read, written in one step and merged under the file lock
every process takes, rebuilt from the files when it does not parse. See :mod:`.local` for why."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import Any, Dict, Iterator, Optional, Tuple

from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore, LocalDatastoreModel

from medicosam_app.atomic_files import write_bytes_atomic
from medicosam_app.security.paths import UnsafePathError, confined_path

logger = logging.getLogger(__name__)

IndexStamp = Tuple[int, int, int, int]


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


def _present(folder: str, name: str) -> bool:
    """Whether ``name`` is a file inside ``folder``. The names come from the index file, which a person (or an
    older version) may have edited: one that leaves the folder counts as absent and is never looked at."""
    try:
        return os.path.exists(confined_path(folder, name))
    except UnsafePathError:
        return False


def reconcile_index(store: LocalDatastore, model: LocalDatastoreModel) -> int:
    """Bring ``model`` in line with the files on disk; returns the number of entries changed."""
    changes = 0
    image_folder = model.image_path()
    for image_id, entry in list(model.objects.items()):
        if not _present(image_folder, store._filename(image_id, entry.image.ext)):
            logger.info("Dropping image %r from the index: its file is gone (or its name leaves the folder)", image_id)
            del model.objects[image_id]
            changes += 1
            continue
        for tag, label in list(entry.labels.items()):
            if not _present(model.label_path(tag), store._filename(image_id, label.ext)):
                logger.info("Dropping label %r (%r) from the index: its file is gone (or its name leaves the folder)",
                            image_id, tag)
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
