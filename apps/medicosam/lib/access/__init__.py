"""Sign-in, roles per route (the route table), the audit trail of requests, and what a request's code may know
about its caller."""

from importlib import import_module
from typing import TYPE_CHECKING, Any, List

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


def __getattr__(name: str) -> Any:
    """A lazy name's value, its module imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
