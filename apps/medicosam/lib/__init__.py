"""The MedicoSAM MONAI Label app's code, in folders by role: :mod:`.tasks`, :mod:`.datastore`, :mod:`.guards`,
:mod:`.access`, :mod:`.http` and :mod:`.viewer`; :mod:`.service_endpoints` wires the service endpoints onto the
running server (re-exported here, imported on first use)."""

from typing import TYPE_CHECKING

from medicosam_app.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .service_endpoints import serve_service_endpoints

__all__ = ["serve_service_endpoints"]

# Imported on first use (PEP 562), not here: every ``import lib.<anything>`` runs this file, and
# :mod:`.service_endpoints` pulls in monailabel, the datastores and torch.
_LAZY = {
    "serve_service_endpoints": ".service_endpoints",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
