"""What each model can do with an image of each layout, for clients to offer only that (our OHIF extension
reads it from ``/info``). One table; the tasks enforce the same rules with a 422 of their own."""

from __future__ import annotations

from typing import Any, Dict, Mapping

from medicosam_app.dicom.label_colors import label_color

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
            "label_colors": {label: list(label_color(int(value))) for label, value in values.items()},
        }
    return answer
