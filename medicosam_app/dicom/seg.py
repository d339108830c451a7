"""Label volumes ↔ DICOM SEG (binary, one segment per label value), via highdicom; no dcmqi binary needed.

The SEG references every source instance (or, for one multi-frame instance, every source frame: an enhanced
CT/MR whose frames are stored in any order, a clip) and carries, for the reader at the PACS, which
algorithm made it and which model version: ``AlgorithmIdentificationSequence`` on each segment, plus the
series description and software versions. Label values need not be 1..N: each segment records the value it
stands for in its ``TrackingID`` (``label value 5``) so reading the SEG back gives the saved label voxel for
voxel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from .label_colors import dicom_cielab, label_color
from ..errors import InvalidRequestError
from .enhanced import frames_have_positions

class SegSource(Protocol):
    """What a SEG is made over: a checked classic series (:class:`.series.DicomSeries`) or any image read by
    :mod:`.image` (a radiograph, a stack, an enhanced volume, a clip)."""

    frames: Sequence[Tuple[str, int]]  # per slice k: (SOP instance UID, 1-based frame number)
    series_uid: str

    def datasets(self) -> List[Dataset]: ...

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
    series: SegSource,
    names: Mapping[int, str],
    author: SegmentationAuthor,
    series_number: int = 300,
) -> Dataset:
    """A DICOM SEG of ``label[i, j, k]`` (k in ``series.frames`` order) with one segment per non-zero value."""
    sources = series.datasets()
    first = sources[0]
    expected = (int(first.Columns), int(first.Rows), len(series.frames))
    if label.shape != expected:
        raise InvalidRequestError(
            f"The label has size {list(label.shape)} but the DICOM series has {list(expected)} (columns, rows, slices): "
            "save a label in the image's geometry."
        )
    one_instance = len(sources) == 1 and len(series.frames) > 1
    reason = seg_unsupported(sources, len(series.frames))
    if reason:
        raise InvalidRequestError(reason)
    values = [int(v) for v in np.unique(label) if v != 0]
    if any(v < 0 or v > 65535 for v in values) or not np.array_equal(label, np.round(label)):
        raise InvalidRequestError("Label values must be whole numbers from 0 to 65535.")
    frames = np.ascontiguousarray(label.transpose(2, 1, 0))  # [k, row, column]
    if one_instance:  # back into the order the frames are stored in (an enhanced instance stores them in any order)
        stored = np.empty_like(frames)
        stored[[number - 1 for _, number in series.frames]] = frames
        frames = stored
    algorithm = hd.AlgorithmIdentificationSequence(
        name=author.algorithm, version=author.model_version, family=codes.cid7162.ArtificialIntelligence,
    )
    descriptions, masks = [], []
    for number, value in enumerate(values, start=1):
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=str(names.get(value, f"label {value}"))[:64],
            segmented_property_category=TISSUE,
            segmented_property_type=TISSUE,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
            tracking_id=f"label value {value}",
            tracking_uid=hd.UID(),
        )
        description.RecommendedDisplayCIELabValue = list(dicom_cielab(label_color(int(value))))  # as our viewer
        descriptions.append(description)
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
        source_images=[_with_type2_attributes(d) for d in sources],
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


def seg_unsupported(sources: Sequence[Dataset], slices: int) -> Optional[str]:
    """Why no DICOM SEG can be written over these sources, or None. highdicom 0.22 references the frames of one
    multi-frame instance only through its functional groups (an enhanced CT/MR/PET), and writes a SEG over sources
    without a frame of reference (radiographs, photographs, most ultrasound) for one frame only."""
    first = sources[0]
    # highdicom references the frames of one instance through their plane positions in a frame of reference.
    placed = "FrameOfReferenceUID" in first and frames_have_positions(first)
    if len(sources) == 1 and slices > 1 and not placed:
        return ("A DICOM SEG over the frames of a clip (a multi-frame instance whose frames have no plane "
                "positions) cannot be written yet: the label is kept on this server only.")
    if len(sources) > 1 and "FrameOfReferenceUID" not in first:
        return (f"A DICOM SEG over {len(sources)} separate images without a frame of reference "
                "(FrameOfReferenceUID) cannot be written yet: the label is kept on this server only.")
    if len(sources) > 1 and any("ImagePositionPatient" not in d for d in sources):
        return (f"A DICOM SEG over {len(sources)} separate images without patient positions cannot be written "
                "yet: the label is kept on this server only.")
    return None


def _with_type2_attributes(dataset: Dataset) -> Dataset:
    """The source with the patient and study attributes a SEG copies present, empty where the modality left them
    out (type 2: present, possibly empty; real radiographs and clips omit some, and highdicom needs them)."""
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        if keyword not in dataset:
            setattr(dataset, keyword, "")
    return dataset


def seg_values(seg: Dataset) -> Dict[int, int]:
    """Segment number → label value, from each segment's ``TrackingID`` (else the segment number)."""
    mapping = {}
    for item in seg.SegmentSequence:
        match = _TRACKING_ID.match(str(item.get("TrackingID", "")))
        mapping[int(item.SegmentNumber)] = int(match.group(1)) if match else int(item.SegmentNumber)
    return mapping


def seg_to_label(seg: Dataset, series: SegSource, dtype=np.uint16) -> np.ndarray:
    """The label volume ``[i, j, k]`` a SEG encodes over ``series``; refuses a SEG of another series."""
    referenced = {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])}
    if referenced and series.series_uid not in referenced:
        raise InvalidRequestError(f"The SEG references series {sorted(referenced)}, not {series.series_uid}.")
    parsed = seg if isinstance(seg, hd.seg.Segmentation) else hd.seg.Segmentation.from_dataset(seg)
    mapping = seg_values(seg)
    rows, columns = int(seg.Rows), int(seg.Columns)
    label = np.zeros((len(series.frames), rows, columns), dtype=dtype)
    uids = [uid for uid, _ in series.frames]
    one_instance = len(set(uids)) == 1 and len(uids) > 1
    for number, value in mapping.items():
        if value == 0:
            continue
        if one_instance:
            mask = parsed.get_pixels_by_source_frame(
                source_sop_instance_uid=uids[0], source_frame_numbers=[n for _, n in series.frames],
                segment_numbers=[number], assert_missing_frames_are_empty=True,
            )[..., 0]
        else:
            mask = parsed.get_pixels_by_source_instance(
                source_sop_instance_uids=uids, segment_numbers=[number], assert_missing_frames_are_empty=True,
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
