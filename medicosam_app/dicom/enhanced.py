"""The geometry of an enhanced multi-frame CT/MR/PET instance, so that its frames become one 3D volume.

An enhanced instance holds a whole series in one file, and the position, orientation and pixel spacing of
each frame live in functional groups (shared by all frames, or per frame) instead of the top-level
attributes a classic slice carries. SimpleITK/GDCM reads such a file in stored frame order and checks
nothing (shuffled frames give a shuffled volume, a 3-plane scout a "volume"), so the geometry is read here
and checked as :func:`~.series.check_series` checks a classic series: one orientation, one pixel spacing,
one position per frame, even spacing along the slice normal. The frames are ordered as series.py orders
classic slices (ascending along ``row × column`` cosines), so the same slices give the same voxels
``[i, j, k]`` and the same ITK geometry whichever way they were stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from .series import FUNCTIONAL_GROUPS, SPACING_TOLERANCE, DicomSeriesError, _check_spacing, _describe

# Gaps are checked against their median, as series.py does, but twice as loosely: positions of enhanced
# frames are rounded per frame, and a real MR with 6.96–7.07 mm gaps (±1 % of 7 mm) sits right at the 1 %
# bound, which highdicom's check rejects. 2 % still refuses real unevenness and any missing frame (100 %).
ENHANCED_SPACING_TOLERANCE = 2 * SPACING_TOLERANCE
SAME_POSITION_MM = 1e-3  # as series._check_spacing: closer frames are at one position
# Dimensions that place a frame in space; any other dimension that varies repeats the slices (phases...).
SPATIAL_DIMENSIONS = {"StackID", "InStackPositionNumber", "ImagePositionPatient"}


def is_enhanced(dataset: Dataset) -> bool:
    """Whether ``dataset`` keeps its geometry in functional groups (an enhanced multi-frame instance)."""
    return any(group in dataset for group in FUNCTIONAL_GROUPS)


def frames_have_positions(dataset: Dataset) -> bool:
    """Whether its frames carry plane positions (shared or per frame): slices placed in space, not a clip."""
    for group in FUNCTIONAL_GROUPS:
        items = dataset.get(group) or []
        if items and items[0].get("PlanePositionSequence"):
            return True
    return False


@dataclass(frozen=True)
class FrameGeometry:
    """Where the frames of one enhanced instance lie, as one volume in ITK (LPS) conventions."""

    frame_order: Tuple[int, ...]  # 0-based frame indices in slice order (k ascending along the normal)
    spacing: Tuple[float, float, float]  # (column spacing, row spacing, slice spacing) in mm
    origin: Tuple[float, float, float]  # LPS position of the first pixel of frame frame_order[0]
    direction: np.ndarray  # 3x3, columns are the LPS directions of i (along a row), j (down a column), k


def enhanced_geometry(dataset: Dataset, name: str = "") -> FrameGeometry:
    """Check that the frames of ``dataset`` form one evenly spaced stack; return their order and geometry."""
    what = f"{_describe(dataset)} in {name}" if name else _describe(dataset)
    items = _frame_items(dataset, what)
    shared = (dataset.get("SharedFunctionalGroupsSequence") or [None])[0]
    positions = _frame_values(items, shared, "PlanePositionSequence", "ImagePositionPatient", what)
    orientations = _frame_values(items, shared, "PlaneOrientationSequence", "ImageOrientationPatient", what)
    pixel_spacings = _frame_values(items, shared, "PixelMeasuresSequence", "PixelSpacing", what)
    _check_one_plane(orientations, pixel_spacings, what)
    row, column = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row, column)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    if len(items) > 1:
        _refuse_repeated_positions(dataset, items, along[order], what)
        _check_even(along[order], what)
        # As ITK's series reader: the distance from the first to the last slice, shared by all gaps.
        slice_spacing = float(along[order[-1]] - along[order[0]]) / (len(items) - 1)
    else:
        slice_spacing = _single_frame_thickness(items[0], shared)
    return FrameGeometry(
        frame_order=tuple(int(i) for i in order),
        spacing=(float(pixel_spacings[0][1]), float(pixel_spacings[0][0]), slice_spacing),
        origin=tuple(float(v) for v in positions[order[0]]),
        direction=np.column_stack([row, column, normal]),
    )


def _frame_items(dataset: Dataset, what: str) -> List[Dataset]:
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    items = list(dataset.get("PerFrameFunctionalGroupsSequence") or [])
    if len(items) != frames or not items:
        raise DicomSeriesError(
            f"{what} has {frames} frame(s) but {len(items)} per-frame functional group item(s) "
            "(PerFrameFunctionalGroupsSequence): where each frame lies is unknown. Export the series again from "
            "the scanner or PACS with its geometry, or as classic single-frame images."
        )
    return items


def _macro(item: Optional[Dataset], sequence: str) -> Optional[Dataset]:
    return item[sequence][0] if item is not None and item.get(sequence) else None


def _frame_values(items: List[Dataset], shared: Optional[Dataset], sequence: str, keyword: str,
                  what: str) -> np.ndarray:
    """``keyword`` of each frame, from its per-frame ``sequence`` or else the shared one: one row per frame."""
    shared_macro = _macro(shared, sequence)
    macros = [_macro(item, sequence) or shared_macro for item in items]
    values = [macro.get(keyword) if macro is not None else None for macro in macros]
    # A PixelSpacing of 0 (written by some devices) says no more than an absent one.
    missing = sum(1 for v in values if not v or (keyword == "PixelSpacing" and min(float(x) for x in v) <= 0))
    if missing:
        raise DicomSeriesError(
            f"{what}: {missing} of {len(items)} frames have no {keyword} ({sequence}, per frame or shared): "
            "they cannot be placed in 3D. Export the series again from the scanner or PACS with its geometry, "
            "or as classic single-frame images."
        )
    return np.array([[float(x) for x in v] for v in values], dtype=float)


def _check_one_plane(orientations: np.ndarray, pixel_spacings: np.ndarray, what: str) -> None:
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        count = len(np.unique(np.round(orientations, 3), axis=0))
        raise DicomSeriesError(f"{what} mixes {count} slice orientations in its {len(orientations)} frames (a "
                               "localizer or a tilted stack?): choose a series of parallel slices.")
    if np.abs(pixel_spacings - pixel_spacings[0]).max() > SPACING_TOLERANCE * pixel_spacings[0].min():
        raise DicomSeriesError(f"{what} mixes pixel spacings {sorted({tuple(s) for s in pixel_spacings.tolist()})}: "
                               "its frames do not form one volume.")


def _refuse_repeated_positions(dataset: Dataset, items: List[Dataset], sorted_along: np.ndarray,
                               what: str) -> None:
    """Name why frames share a position when the instance says so (several stacks or phases); a plain
    duplicate is left to series.py's message."""
    if not np.any(np.diff(sorted_along) < SAME_POSITION_MM):
        return
    contents = [_macro(item, "FrameContentSequence") or Dataset() for item in items]
    stacks = sorted({str(c.StackID) for c in contents if "StackID" in c})
    if len(stacks) > 1:
        raise DicomSeriesError(
            f"{what} holds {len(stacks)} stacks (StackID {', '.join(stacks)}) whose frames share slice positions: "
            "several stacks in one instance are not yet offered as separate images. Choose a single-stack, "
            "single-phase series, or export each stack as its own series."
        )
    count, label = _repeats(dataset, contents)
    if count > 1:
        raise DicomSeriesError(
            f"{what} holds {count} {label} of the same slices in one instance: they are not yet offered as "
            "separate images. Choose a single-stack, single-phase series, or export each phase as its own series."
        )


def _repeats(dataset: Dataset, contents: List[Dataset]) -> Tuple[int, str]:
    """How many times a non-spatial dimension repeats the slices, and a name for it."""
    found = [(len({c.TemporalPositionIndex for c in contents if "TemporalPositionIndex" in c}),
              "temporal positions (TemporalPositionIndex)")]
    indices = [_as_list(c.get("DimensionIndexValues")) for c in contents]
    for axis, dimension in enumerate(dataset.get("DimensionIndexSequence") or []):
        keyword = keyword_for_tag(dimension.get("DimensionIndexPointer", 0)) or "an unnamed dimension"
        if keyword not in SPATIAL_DIMENSIONS:
            values = {frame[axis] for frame in indices if axis < len(frame)}
            found.append((len(values), f"values of {keyword} (DimensionIndexValues)"))
    return max(found, key=lambda pair: pair[0])


def _as_list(value: object) -> List[int]:
    """DimensionIndexValues as a list: pydicom gives one value as an int, several as a MultiValue."""
    if value is None:
        return []
    return [int(v) for v in value] if hasattr(value, "__iter__") else [int(value)]


def _check_even(sorted_along: np.ndarray, what: str) -> None:
    gaps = np.diff(sorted_along)
    step = float(np.median(gaps))
    if step >= SAME_POSITION_MM and np.all(np.abs(gaps - step) <= ENHANCED_SPACING_TOLERANCE * step):
        return
    # Beyond the looser bound the stricter 1 % check of series.py fails too, and says how (duplicate,
    # missing frames or uneven spacing) in the words used for classic series.
    _check_spacing(sorted_along, what)


def _single_frame_thickness(item: Dataset, shared: Optional[Dataset]) -> float:
    """A lone frame has no neighbour to measure: its nominal spacing or thickness, else 1 mm as ITK."""
    measures = _macro(item, "PixelMeasuresSequence") or _macro(shared, "PixelMeasuresSequence") or Dataset()
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        if measures.get(keyword) and float(measures.get(keyword)) > 0:
            return float(measures.get(keyword))
    return 1.0
