"""The checks in front of MONAI Label's endpoints: every malformed request gets a 4xx that says what to fix
(:mod:`.endpoints`, one check per endpoint, made of :mod:`.values` and :mod:`.sessions`; :mod:`.table` says which
check guards which route and installs them)."""

from .endpoints import batch_devices, require_batch_model
from .table import CHECKS, guard_requests
from .values import DEFAULT_SESSION_MAX_BYTES, inference_label_tag, monai_label_options

__all__ = ["DEFAULT_SESSION_MAX_BYTES", "CHECKS", "batch_devices", "guard_requests", "inference_label_tag",
           "monai_label_options", "require_batch_model"]
