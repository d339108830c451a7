"""DICOM in and out: image series checked and read as volumes, labels written and read as DICOM SEG."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

from .label_colors import label_color

if TYPE_CHECKING:
    from .enhanced import enhanced_geometry, is_enhanced
    from .image import frame_time_ms, projection_spacing, read_dicom_files, read_dicom_folder
    from .labelled_series import local_studies
    from .pixels import PixelDataError, presented_frames
    from .seg import SegmentationAuthor, SegSource, label_names, label_to_seg, seg_to_label, seg_unsupported
    from .series import NON_IMAGE_MODALITIES, DicomSeries, DicomSeriesError, read_series_folder
    from .wado import STORED_TRANSFER_SYNTAX, PacsContentError, download_series

__all__ = [
    "NON_IMAGE_MODALITIES",
    "STORED_TRANSFER_SYNTAX",
    "DicomSeries",
    "DicomSeriesError",
    "PacsContentError",
    "PixelDataError",
    "SegSource",
    "SegmentationAuthor",
    "download_series",
    "enhanced_geometry",
    "frame_time_ms",
    "is_enhanced",
    "label_color",
    "label_names",
    "label_to_seg",
    "local_studies",
    "presented_frames",
    "projection_spacing",
    "read_dicom_files",
    "read_dicom_folder",
    "read_series_folder",
    "seg_to_label",
    "seg_unsupported",
]

# Imported on first use (PEP 562), not here: these modules import pydicom, SimpleITK, highdicom and requests, which
# :mod:`.label_colors` (the viewer's capabilities read it) does without.
_LAZY = {
    "enhanced_geometry": ".enhanced",
    "is_enhanced": ".enhanced",
    "frame_time_ms": ".image",
    "projection_spacing": ".image",
    "read_dicom_files": ".image",
    "read_dicom_folder": ".image",
    "local_studies": ".labelled_series",
    "PixelDataError": ".pixels",
    "presented_frames": ".pixels",
    "SegSource": ".seg",
    "SegmentationAuthor": ".seg",
    "label_names": ".seg",
    "label_to_seg": ".seg",
    "seg_to_label": ".seg",
    "seg_unsupported": ".seg",
    "NON_IMAGE_MODALITIES": ".series",
    "DicomSeries": ".series",
    "DicomSeriesError": ".series",
    "read_series_folder": ".series",
    "STORED_TRANSFER_SYNTAX": ".wado",
    "PacsContentError": ".wado",
    "download_series": ".wado",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
