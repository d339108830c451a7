"""Summaries of an evaluation: means per opening prompt, the terminal table, CSV rows, and a comparison."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

if TYPE_CHECKING:
    from .runner import EvaluationResult


def _mean(values: List[float]) -> Optional[float]:
    return round(float(np.mean(values)), 4) if values else None


def summarise(result: "EvaluationResult") -> Dict[str, Any]:
    """Per opening prompt: 2D mean Dice per iteration, mean NoC and failures per threshold; 3D mean Dice.
    Also per class, so a site sees which structure costs its annotators the clicks."""
    settings = result.settings
    summary: Dict[str, Any] = {}
    for start in settings.starts:
        flat = [o for o in result.objects if o.start == start and o.dimension == "2d"]
        solid = [o for o in result.objects if o.start == start and o.dimension == "3d"]
        summary[start] = {"2d": _summary_2d(flat, settings.iterations), "3d": _summary_3d(solid)}
        summary[start]["per_class"] = {
            name: {
                "2d": _summary_2d([o for o in flat if o.class_name == name], settings.iterations),
                "3d": _summary_3d([o for o in solid if o.class_name == name]),
            }
            for name in sorted({o.class_name for o in flat + solid})
        }
    return summary


def _summary_2d(objects: List[Any], iterations: int) -> Dict[str, Any]:
    keys = sorted({k for o in objects for k in o.noc}, key=float)
    return {
        "objects": len(objects),
        "dice_per_iteration": [_mean([o.dice[i] for o in objects]) for i in range(iterations)] if objects else [],
        "noc": {k: _mean([o.noc[k] for o in objects]) for k in keys},
        "never_reached": {k: sum(not o.reached[k] for o in objects) for k in keys},
    }


def _summary_3d(objects: List[Any]) -> Dict[str, Any]:
    return {"objects": len(objects), "dice": _mean([o.dice[0] for o in objects])}


def _cell(value: Optional[float], digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table(result: "EvaluationResult", compare: Optional["EvaluationResult"] = None) -> str:
    """The terminal table: one row per opening prompt (and per model, with a Δ row when comparing)."""
    summary = summarise(result)
    other = summarise(compare) if compare is not None else None
    settings = result.settings
    noc_keys = [k for k in (summary[settings.starts[0]]["2d"]["noc"] or {})]
    header = ["model", "start", "objects"] + [f"Dice@{i + 1}" for i in range(settings.iterations)]
    header += [f"NoC@{k}" for k in noc_keys] + [f"never@{k}" for k in noc_keys] + ["3D objects", "3D Dice"]
    rows: List[List[str]] = []
    for start in settings.starts:
        models = [("served", summary)] + ([("compare", other)] if other is not None else [])
        for name, s in models:
            two, three = s[start]["2d"], s[start]["3d"]
            rows.append(
                [name, start, str(two["objects"])]
                + [_cell(d) for d in two["dice_per_iteration"]] + ["—"] * (settings.iterations - len(two["dice_per_iteration"]))
                + [_cell(two["noc"].get(k), 2) for k in noc_keys] + [str(two["never_reached"].get(k, "—")) for k in noc_keys]
                + [str(three["objects"]), _cell(three["dice"])]
            )
        if other is not None:
            a, b = summary[start], other[start]
            dice_delta = [_delta(x, y) for x, y in zip(a["2d"]["dice_per_iteration"], b["2d"]["dice_per_iteration"])]
            rows.append(
                ["Δ served−compare", start, ""] + dice_delta + [""] * (settings.iterations - len(dice_delta))
                + [_delta(a["2d"]["noc"].get(k), b["2d"]["noc"].get(k), 2) for k in noc_keys] + [""] * len(noc_keys)
                + ["", _delta(a["3d"]["dice"], b["3d"]["dice"])]
            )
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in [header] + rows]
    title = (
        f"MedicoSAM interactive evaluation — protocol {settings.protocol}, {len(result.images)} image(s), "
        f"{settings.iterations} predictions per 2D object, NoC capped at {settings.max_clicks} prompts"
    )
    return "\n".join([title] + lines)


def _delta(a: Optional[float], b: Optional[float], digits: int = 3) -> str:
    if a is None or b is None:
        return "—"
    return f"{a - b:+.{digits}f}"


CSV_FIELDS = ["model", "image", "dimension", "class", "component", "start", "slice", "size"]


def result_document(result: "EvaluationResult") -> Dict[str, Any]:
    """The whole result as JSON-ready values: settings, model, images, what was skipped, summary, objects."""
    return {
        "settings": asdict(result.settings),
        "model": result.model,
        "images": result.images,
        "skipped": [{"image": image, "reason": reason} for image, reason in result.skipped],
        "seconds": round(result.seconds, 2),
        "summary": summarise(result),
        "objects": [o.to_dict() for o in result.objects],
    }


def write_csv(path: os.PathLike, results: Dict[str, "EvaluationResult"]) -> None:
    """One row per object and opening prompt (and per model): Dice per iteration, NoC, reached."""
    from ..atomic_files import write_bytes_atomic

    iterations = max(r.settings.iterations for r in results.values())
    extra = max((len(o.dice) for r in results.values() for o in r.objects), default=0)
    keys = sorted({k for r in results.values() for o in r.objects for k in o.noc}, key=float)
    fields = CSV_FIELDS + [f"dice_{i + 1}" for i in range(max(iterations, extra))]
    fields += [f"noc_{k}" for k in keys] + [f"reached_{k}" for k in keys]
    handle = io.StringIO()
    writer = csv.writer(handle)
    writer.writerow(fields)
    dice_columns = len(fields) - len(CSV_FIELDS) - 2 * len(keys)
    for model, result in results.items():
        for o in result.objects:
            dice = [f"{d:.6f}" for d in o.dice] + [""] * (dice_columns - len(o.dice))
            writer.writerow(
                [model, o.image_id, o.dimension, o.class_name, o.component, o.start, o.slice_index, o.size] + dice
                + [o.noc.get(k, "") for k in keys] + [int(o.reached[k]) if k in o.reached else "" for k in keys]
            )
    write_bytes_atomic(path, handle.getvalue().encode())
