"""Points, box and slice as 3D Slicer and OHIF send them, read into :class:`VoxelPrompts`.

Slicer sends ``foreground`` / ``background`` as lists of voxel indices ``[i, j, k]``, an ``roi`` as
``[i0, i1, j0, j1, k0, k1]`` and the current ``slice``; OHIF sends only the points of the last clicked slice
(fractions where a point lies between voxel centres) and no ``slice``. Whether they lie inside the image is for
the core to say, once it has the image (:func:`~medicosam_app.interactive.prompts.prompts_within`).
"""

from __future__ import annotations

from typing import Annotated, Any, Dict, Optional, Tuple

from pydantic import BeforeValidator, ValidationInfo, model_validator

from ..errors import InvalidRequestError
from ..interactive.prompts import Voxel, VoxelBox, VoxelPrompts
from ..request_values import parse_int, parse_number, shortened_repr
from .fields import RequestModel

MAX_POINTS = 1000  # per request, foreground and background together; a click session has a few dozen


def read_coordinate(value: Any, key: str) -> int:
    """One voxel coordinate: a finite number (OHIF may send fractions), rounded to the nearest index."""
    return int(round(parse_number(value, key)))


def read_voxel(value: Any, key: str) -> Voxel:
    """``[i, j, k]``: three coordinates."""
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise InvalidRequestError(f"'{key}' must be a voxel index [i, j, k], got {shortened_repr(value)}.")
    return tuple(read_coordinate(v, f"{key}[{n}]") for n, v in enumerate(value))  # type: ignore[return-value]


def read_box(value: Any, key: str) -> Optional[VoxelBox]:
    """``[i0, i1, j0, j1, k0, k1]`` → ``((i0, i1), (j0, j1), (k0, k1))`` with each pair ordered; ``[]`` is no box."""
    if isinstance(value, (list, tuple)) and len(value) == 0:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 6:
        raise InvalidRequestError(f"'{key}' must be [i0, i1, j0, j1, k0, k1], got {shortened_repr(value)}.")
    numbers = [read_coordinate(v, f"{key}[{n}]") for n, v in enumerate(value)]
    # Slicer maps the ROI's RAS min/max corners to IJK, so on an axis that runs against RAS (every LPS-stored
    # DICOM series) its first value is the larger one. The box is the same either way.
    return tuple((min(a, b), max(a, b)) for a, b in zip(numbers[0::2], numbers[1::2]))  # type: ignore[return-value]


def _points(value: Any, info: ValidationInfo) -> Tuple[Voxel, ...]:
    if not isinstance(value, (list, tuple)):
        raise InvalidRequestError(
            f"'{info.field_name}' must be a list of voxel indices [[i, j, k], ...], got {shortened_repr(value)}."
        )
    return tuple(read_voxel(point, f"{info.field_name}[{n}]") for n, point in enumerate(value))


Points = Annotated[Tuple[Voxel, ...], BeforeValidator(_points)]
Box = Annotated[Optional[VoxelBox], BeforeValidator(lambda value, info: read_box(value, info.field_name))]


class PromptFields(RequestModel):
    """``foreground``, ``background``, ``roi``, ``slice``: what a click or a box says, in voxel indices."""

    foreground: Points = ()
    background: Points = ()
    roi: Box = None
    slice: Optional[Annotated[int, BeforeValidator(lambda value, info: parse_int(value, "slice"))]] = None

    @model_validator(mode="before")
    @classmethod
    def _bounded_count(cls, values: Any) -> Any:
        """Refuse a flood of points before reading each one (the work grows with their number)."""
        if isinstance(values, dict):
            count = sum(len(values[key]) for key in ("foreground", "background")
                        if isinstance(values.get(key), (list, tuple)))
            if count > MAX_POINTS:
                raise InvalidRequestError(
                    f"{count} points were sent; at most {MAX_POINTS} (foreground and background together) are "
                    "accepted.", status=413,
                )
        return values

    def audit_summary(self) -> Dict[str, Any]:
        """The prompts as the audit line keeps them: points, ``box`` (the roi, each axis ordered), slice, axis,
        label, where sent."""
        summary = self.sent("foreground", "background", "slice", "axis", "label")
        if self.roi is not None:
            summary["box"] = [value for pair in self.roi for value in pair]
        return {key: list(map(list, value)) if key in ("foreground", "background") else value
                for key, value in summary.items() if value not in ((), None)}

    def prompts(self) -> VoxelPrompts:
        """The prompts as the core takes them (checked against the image there)."""
        return VoxelPrompts(self.foreground, self.background, self.roi, self.slice)
