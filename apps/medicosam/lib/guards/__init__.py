"""The checks in front of MONAI Label's endpoints: every malformed request gets a 4xx that says what to fix
(:mod:`.endpoints`, one check per endpoint, built on the request models of :mod:`medicosam_app.api` and on
:mod:`.values` and :mod:`.sessions`; :mod:`.table` names the checks the route table's ``guard`` column refers to
and installs them)."""

from .endpoints import batch_devices, require_batch_model
from .table import CHECKS, guard_requests
from .values import DEFAULT_SESSION_MAX_BYTES

__all__ = ["CHECKS", "DEFAULT_SESSION_MAX_BYTES", "batch_devices", "guard_requests", "require_batch_model"]
