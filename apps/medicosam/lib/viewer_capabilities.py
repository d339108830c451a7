"""What each model can do with an image of each layout, for clients to offer only that (our OHIF extension
reads it from ``/info``). One table; the tasks enforce the same rules with a 422 of their own."""

from __future__ import annotations

from typing import Any, Dict, Mapping

LAYOUTS = ("volume", "cine", "stack", "plane")

# model → layout → what it offers there. "prompts": the prompt kinds taken; "propagates": along what.
CAPABILITIES: Dict[str, Dict[str, Dict[str, Any]]] = {
    "medicosam_interactive": {layout: {"prompts": ["point", "box"]} for layout in LAYOUTS},
    "medicosam_3d": {
        "volume": {"prompts": ["point", "box"], "propagates": "slices"},
        "cine": {"prompts": ["point", "box"], "propagates": "frames"},
    },
    "medicosam_semantic": {layout: {"automatic": "semantic"} for layout in LAYOUTS},
    "medicosam_instances": {layout: {"automatic": "instances"} for layout in LAYOUTS},
}

# Label colours (RGB) by label value, so every viewer shows a class in the same colour.
PALETTE = (
    (230, 80, 80), (80, 200, 120), (80, 140, 240), (240, 200, 60), (200, 100, 220), (60, 210, 220),
    (250, 150, 60), (160, 120, 90), (250, 130, 180), (150, 150, 150),
)


def label_color(value: int) -> list:
    return list(PALETTE[(value - 1) % len(PALETTE)]) if value > 0 else [0, 0, 0]


def capabilities(models: Mapping[str, Any]) -> Dict[str, Any]:
    """The table for the models this server serves, with each labelled model's label colours."""
    answer: Dict[str, Any] = {}
    for name in models:
        if name not in CAPABILITIES:
            continue
        labels = getattr(models[name], "labels", None)
        values = labels if isinstance(labels, dict) else {label: n + 1 for n, label in enumerate(labels or [])}
        answer[name] = {
            "layouts": CAPABILITIES[name],
            "label_colors": {label: label_color(int(value)) for label, value in values.items()},
        }
    return answer
