"""The reference of every configuration key as a Markdown table, generated from :class:`.keys.ConfigKeys`: what
``python -m medicosam_app config`` prints and docs/configuration.md holds between its markers."""

from __future__ import annotations

from pydantic.fields import FieldInfo

from .keys import ConfigKeys, as_markdown
from .values import env_name


def shown_default(field: FieldInfo) -> str:
    """A key's default as the table writes it: the text given with the key, else the value, else ``–`` (unset)."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and extra.get("shown_default"):
        return str(extra["shown_default"])
    if field.default is None:
        return "–"
    return as_markdown(field.default)


def markdown_table() -> str:
    """One row per key (key | env | default | meaning), in the model's order, ending with a newline."""
    rows = ["| key | env | default | meaning |", "|---|---|---|---|"]
    for key, field in ConfigKeys.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")  # a bar would end the cell
        rows.append(f"| `{key}` | `{env_name(key)}` | {shown_default(field)} | {meaning} |")
    return "\n".join(rows) + "\n"
