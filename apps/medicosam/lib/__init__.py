"""The MedicoSAM MONAI Label app's code, in folders by role: :mod:`.tasks`, :mod:`.datastore`, :mod:`.guards`,
:mod:`.access`, :mod:`.http` and :mod:`.viewer`; :mod:`.service_endpoints` wires the service endpoints onto the
running server (re-exported here, imported on first use)."""

from importlib import import_module
from typing import TYPE_CHECKING, Any, List

if TYPE_CHECKING:
    from .service_endpoints import serve_service_endpoints

__all__ = ["serve_service_endpoints"]

# Imported on first use (PEP 562), not here: every ``import lib.<anything>`` runs this file, and
# :mod:`.service_endpoints` pulls in monailabel, the datastores and torch.
_LAZY = {
    "serve_service_endpoints": ".service_endpoints",
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
