"""Our OHIF build at /ohif/: its files, its configuration per server, and what each model offers per image layout."""

from typing import TYPE_CHECKING

from medicosam_app.lazy_exports import lazy_exports

from .viewer_config import EXTENSION_URL, viewer_app_config

if TYPE_CHECKING:
    from .ohif_route import ohif_folder, resolve_asset, serve_ohif
    from .viewer_capabilities import capabilities
    from .viewer_route import serve_viewer

__all__ = [
    "EXTENSION_URL",
    "capabilities",
    "ohif_folder",
    "resolve_asset",
    "serve_ohif",
    "serve_viewer",
    "viewer_app_config",
]

# Imported on first use (PEP 562), not here: the routes import monailabel, fastapi and torch, and
# :mod:`.viewer_capabilities` numpy, which :mod:`.viewer_config` (stdlib alone) does without. Left out: the
# constants ``ohif_route.ROUTE``, ``viewer_route.BUILD`` and ``viewer_route.EXTENSION``, which say which route or
# folder they are only beside their module's name.
_LAZY = {
    "ohif_folder": ".ohif_route",
    "resolve_asset": ".ohif_route",
    "serve_ohif": ".ohif_route",
    "capabilities": ".viewer_capabilities",
    "serve_viewer": ".viewer_route",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
