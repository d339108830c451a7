"""Sign-in, roles per route (the route table), the audit trail of requests, and what a request's code may know
about its caller."""

from typing import TYPE_CHECKING

from medicosam_app.lazy_exports import lazy_exports

from .request_context import add_audit_details, current_user, may_act_for_others, role_for_others

if TYPE_CHECKING:
    from .access_control import SiteAccess, install_access_control

__all__ = [
    "SiteAccess",
    "add_audit_details",
    "current_user",
    "install_access_control",
    "may_act_for_others",
    "role_for_others",
]

# Imported on first use (PEP 562), not here: :mod:`.access_control` imports fastapi, which
# :mod:`.request_context` (read by the datastore and the guards) does without. Left out: the function
# ``lock_down.lock_down`` (monailabel, torch), whose name is its module's (``access.lock_down``).
_LAZY = {
    "SiteAccess": ".access_control",
    "install_access_control": ".access_control",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
