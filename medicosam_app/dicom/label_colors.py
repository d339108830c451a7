"""One colour per label value, shared by every place a label is shown: the viewer (through ``/info``) and the
DICOM SEG written to the PACS (its RecommendedDisplayCIELabValue), so a class looks the same in our viewer, in
OHIF's SEG view and in any other PACS viewer."""

from __future__ import annotations

from typing import Tuple

import numpy as np

RGB = Tuple[int, int, int]

PALETTE: Tuple[RGB, ...] = (
    (230, 80, 80), (80, 200, 120), (80, 140, 240), (240, 200, 60), (200, 100, 220), (60, 210, 220),
    (250, 150, 60), (160, 120, 90), (250, 130, 180), (150, 150, 150),
)


def label_color(value: int) -> RGB:
    """The display colour of label value ``value`` (1, 2, …; the palette repeats after ten); 0 is black."""
    return PALETTE[(value - 1) % len(PALETTE)] if value > 0 else (0, 0, 0)


def dicom_cielab(rgb: RGB) -> Tuple[int, int, int]:
    """An sRGB colour as DICOM's RecommendedDisplayCIELabValue (L*, a*, b* scaled to 0..65535)."""
    import highdicom as hd
    from skimage.color import rgb2lab

    l_star, a_star, b_star = (float(v) for v in rgb2lab(np.asarray(rgb, dtype=float).reshape(1, 1, 3) / 255.0)[0, 0])
    return tuple(hd.color.CIELabColor(l_star, a_star, b_star).value)  # type: ignore[return-value]
