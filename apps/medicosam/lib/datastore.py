"""The local datastore, with label saves that are checked against the image and written atomically."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict

import SimpleITK as sitk
from fastapi import HTTPException
from filelock import FileLock
from monailabel.datastore.local import DataModel, LocalDatastore

logger = logging.getLogger(__name__)


def _image_size(path: str) -> tuple:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    size = tuple(reader.GetSize())
    return size + (1,) * (3 - len(size))


def store_label(
    store: LocalDatastore, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]
) -> str:
    """Check a label against its image and copy it into ``store`` atomically (temporary name, then rename)."""
    obj = store._datastore.objects.get(image_id)
    if not obj:
        raise HTTPException(404, f"Image '{image_id}' is not in the datastore; list images with GET /datastore/.")
    image_path = store.get_image_uri(image_id)
    try:
        label_size = _image_size(label_filename)
    except RuntimeError as error:
        raise HTTPException(422, f"The label file cannot be read as an image: {error}".strip()) from error
    if os.path.isfile(image_path) and label_size != _image_size(image_path):
        raise HTTPException(
            422,
            f"The label has size {list(label_size)} but image '{image_id}' has {list(_image_size(image_path))}: "
            "save a label in the image's geometry.",
        )

    _, label_ext = store._to_id(os.path.basename(label_filename))
    label_dir = store._datastore.label_path(label_tag)
    name = store._filename(image_id, label_ext)
    with FileLock(store._lock_file):
        os.makedirs(label_dir, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=".saving_", dir=label_dir)
        os.close(fd)
        try:
            shutil.copyfile(label_filename, partial)
            os.replace(partial, os.path.join(label_dir, name))
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        info = dict(label_info or {})
        info.update({"ts": int(time.time()), "name": name})
        obj.labels[label_tag] = DataModel(info=info, ext=label_ext)
        store._update_datastore_file(lock=False)
    logger.info("Saved label %s for image %s (tag %s)", name, image_id, label_tag)
    return image_id


class CheckedLocalDatastore(LocalDatastore):
    """``save_label`` refuses unknown images and labels of another size, and never leaves half a file."""

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        return store_label(self, image_id, label_filename, label_tag, label_info)
