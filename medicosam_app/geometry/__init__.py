"""Volumes and their geometry: reading images with their direction and spacing, and the one mapping between
voxels, display-oriented slice pixels and SAM's 1024² frame."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

from .compressed_streams import IncompleteFileError

if TYPE_CHECKING:
    from .coordinates import SamFrame, SliceView
    from .file_integrity import check_file_complete, count_nonfinite
    from .label_check import GEOMETRY_FORMATS, Grid, label_value_problems, on_image_grid, read_checked_label
    from .packed_slice import PackedSlice
    from .volume import IMAGE_FILE_PATTERNS, Volume, image_size, read_label, read_volume, write_image, write_label
    from .volume_cache import VolumeCache

__all__ = [
    "GEOMETRY_FORMATS",
    "IMAGE_FILE_PATTERNS",
    "Grid",
    "IncompleteFileError",
    "PackedSlice",
    "SamFrame",
    "SliceView",
    "Volume",
    "VolumeCache",
    "check_file_complete",
    "count_nonfinite",
    "image_size",
    "label_value_problems",
    "on_image_grid",
    "read_checked_label",
    "read_label",
    "read_volume",
    "write_image",
    "write_label",
]

# Imported on first use (PEP 562), not here: these modules import numpy, SimpleITK, and (coordinates,
# volume) torch and segment_anything, which :mod:`.compressed_streams` (stdlib alone) does without.
_LAZY = {
    "SamFrame": ".coordinates",
    "SliceView": ".coordinates",
    "check_file_complete": ".file_integrity",
    "count_nonfinite": ".file_integrity",
    "GEOMETRY_FORMATS": ".label_check",
    "Grid": ".label_check",
    "label_value_problems": ".label_check",
    "on_image_grid": ".label_check",
    "read_checked_label": ".label_check",
    "PackedSlice": ".packed_slice",
    "IMAGE_FILE_PATTERNS": ".volume",
    "Volume": ".volume",
    "image_size": ".volume",
    "read_label": ".volume",
    "read_volume": ".volume",
    "write_image": ".volume",
    "write_label": ".volume",
    "VolumeCache": ".volume_cache",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
