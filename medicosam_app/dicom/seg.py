"""Label volumes ↔ DICOM SEG (binary, one segment per label value), via highdicom; no dcmqi binary needed.

The SEG references every source instance of the image series and carries, for the reader at the PACS, which
algorithm made it and which model version: ``AlgorithmIdentificationSequence`` on each segment, plus the
series description and software versions. Label values need not be 1..N: each segment records the value it
stands for in its ``TrackingID`` (``label value 5``) so reading the SEG back gives the saved label voxel for
voxel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Mapping, Optional

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ..errors import InvalidRequestError
from .series import DicomSeries

_TRACKING_ID = re.compile(r"^label value (\d+)$")
TISSUE = codes.SCT.Tissue


@dataclass(frozen=True)
class SegmentationAuthor:
    """Who made the label: the algorithm and model version written into the SEG."""

    algorithm: str
    model_version: str
    software_version: str
    series_description: str = "MedicoSAM label"
    creator: Optional[str] = None  # the user who saved the label (ContentCreatorName)


def label_to_seg(
    label: np.ndarray,
    series: DicomSeries,
    names: Mapping[int, str],
    author: SegmentationAuthor,
    series_number: int = 300,
) -> Dataset:
    """A DICOM SEG of ``label[i, j, k]`` (in ``series`` slice order) with one segment per non-zero value."""
    expected = (int(series.headers[0].Columns), int(series.headers[0].Rows), len(series.files))
    if label.shape != expected:
        raise InvalidRequestError(
            f"The label has size {list(label.shape)} but the DICOM series has {list(expected)} (columns, rows, slices): "
            "save a label in the image's geometry."
        )
    values = [int(v) for v in np.unique(label) if v != 0]
    if any(v < 0 or v > 65535 for v in values) or not np.array_equal(label, np.round(label)):
        raise InvalidRequestError("Label values must be whole numbers from 0 to 65535.")
    frames = np.ascontiguousarray(label.transpose(2, 1, 0))  # [slice, row, column] as the source frames
    algorithm = hd.AlgorithmIdentificationSequence(
        name=author.algorithm, version=author.model_version, family=codes.cid7162.ArtificialIntelligence,
    )
    descriptions, masks = [], []
    for number, value in enumerate(values, start=1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=str(names.get(value, f"label {value}"))[:64],
            segmented_property_category=TISSUE,
            segmented_property_type=TISSUE,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
            tracking_id=f"label value {value}",
            tracking_uid=hd.UID(),
        ))
        masks.append(frames == value)
    if not values:  # an empty label is a valid answer ("nothing here"); SEG needs one segment to say it
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=1, segment_label="empty", segmented_property_category=TISSUE,
            segmented_property_type=TISSUE, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm, tracking_id="label value 0", tracking_uid=hd.UID(),
        ))
        masks.append(np.zeros(frames.shape, dtype=bool))
    pixel_array = np.stack(masks, axis=-1).astype(np.uint8)  # [slice, row, column, segment]
    seg = hd.seg.Segmentation(
        source_images=series.datasets(),
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="MedicoSAM Label",
        manufacturer_model_name=author.algorithm,
        software_versions=[author.software_version, author.model_version],
        device_serial_number="0",
        content_description=f"{author.algorithm} {author.model_version}"[:64],
        content_label="MEDICOSAM",
        # A user name as a DICOM person name: one component, so a trailing "^" (family name only).
        content_creator_name=f"{author.creator[:63]}^" if author.creator else None,
        omit_empty_frames=bool(values),
    )
    seg.SeriesDescription = f"{author.series_description} ({author.model_version})"[:64]
    return seg


def seg_values(seg: Dataset) -> Dict[int, int]:
    """Segment number → label value, from each segment's ``TrackingID`` (else the segment number)."""
    mapping = {}
    for item in seg.SegmentSequence:
        match = _TRACKING_ID.match(str(item.get("TrackingID", "")))
        mapping[int(item.SegmentNumber)] = int(match.group(1)) if match else int(item.SegmentNumber)
    return mapping


def seg_to_label(seg: Dataset, series: DicomSeries, dtype=np.uint16) -> np.ndarray:
    """The label volume ``[i, j, k]`` a SEG encodes over ``series``; refuses a SEG of another series."""
    referenced = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    if referenced and series.series_uid not in referenced:
        raise InvalidRequestError(f"The SEG references series {sorted(referenced)}, not {series.series_uid}.")
    parsed = seg if isinstance(seg, hd.seg.Segmentation) else hd.seg.Segmentation.from_dataset(seg)
    mapping = seg_values(seg)
    label = np.zeros((len(series.files), int(series.headers[0].Rows), int(series.headers[0].Columns)), dtype=dtype)
    for number, value in mapping.items():
        if value == 0:
            continue
        mask = parsed.get_pixels_by_source_instance(
            source_sop_instance_uids=series.sop_instance_uids, segment_numbers=[number],
            assert_missing_frames_are_empty=True,
        )[..., 0]
        label[mask > 0] = value
    return np.ascontiguousarray(label.transpose(2, 1, 0))


def label_names(label_info: Optional[object]) -> Dict[int, str]:
    """Value → name from a client's ``label_info`` (``[{"name", "idx"}]``, as Slicer sends) or ``{name: idx}``."""
    names: Dict[int, str] = {}
    if isinstance(label_info, Mapping):
        label_info = [{"name": k, "idx": v} for k, v in label_info.items()]
    for item in label_info or []:
        if isinstance(item, Mapping) and "idx" in item:
            try:
                names[int(item["idx"])] = str(item.get("name", f"label {item['idx']}"))
            except (TypeError, ValueError):
                continue
    return names
