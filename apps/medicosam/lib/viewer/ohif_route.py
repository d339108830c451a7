"""Serve MONAI Label's bundled OHIF viewer completely, and nothing outside its folder.

MONAI Label 0.8.5's ``/ohif/{path}`` replaces "/" with ``os.pathsep`` before joining, so every nested asset
(``assets/images/...``, ``dicom-microscopy-viewer/...``) is answered with ``index.html`` and the viewer
breaks. The route is replaced at start-up (the installed package is not edited) by one that resolves the
path, serves it only if it lies inside the OHIF folder, answers 404 for a missing asset and ``index.html``
for the viewer's own client-side routes (``/ohif/viewer``, ``/ohif/monai-label?...``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.utils.others.generic import get_mime_type

from ..http.responsive_server import routers_of

logger = logging.getLogger(__name__)

ROUTE = "/ohif/{path:path}"


def ohif_folder() -> Path:
    import monailabel.endpoints.ohif as ohif_endpoint

    return (Path(ohif_endpoint.__file__).resolve().parent / "static" / "ohif").resolve()


def resolve_asset(root: Path, path: str) -> Optional[Path]:
    """The file ``path`` names under ``root``; ``index.html`` for a client-side route; None if it must 404.

    Anything that resolves outside ``root`` (``..``, ``%2e%2e`` once decoded, absolute paths, symlinks out)
    is refused, whether or not the file exists.
    """
    index = root / "index.html"
    if not path:
        return index
    if path.startswith(("/", "\\")):  # an absolute path is never an asset
        return None
    try:
        target = (root / path).resolve()
    except (OSError, ValueError):  # a NUL byte, a loop of links
        return None
    if target != root and root not in target.parents:
        return None
    if target.is_file():
        return target
    if Path(path).suffix:  # a missing asset (.js, .css, .png ...) is a 404, not the app page
        return None
    return index


def serve_ohif(app: FastAPI, root: Optional[Path] = None) -> None:
    """Replace the OHIF route of ``app`` (MONAI Label's FastAPI object) by the confined one."""
    root = root or ohif_folder()

    def get_ohif(path: str, user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))):
        file = resolve_asset(root, path)
        if file is None:
            raise HTTPException(status_code=404, detail="Resource not found")
        return FileResponse(str(file), media_type=get_mime_type(str(file)))

    replaced = replace_viewer_route(app, get_ohif)
    logger.info("OHIF served from %s (%d route(s) replaced)", root, replaced)


def replace_viewer_route(app: FastAPI, endpoint: Callable[..., Any]) -> int:
    """Put ``endpoint`` where MONAI Label's ``GET /ohif/{path}`` route is (the installed package is not edited);
    returns how many routes were replaced."""
    replaced = 0
    for router in routers_of(app.router):
        for position, route in enumerate(router.routes):
            if isinstance(route, APIRoute) and route.path == ROUTE and "GET" in route.methods:
                router.routes[position] = APIRoute(ROUTE, endpoint, methods=["GET"], include_in_schema=False)
                getattr(router, "_mark_routes_changed", lambda: None)()
                replaced += 1
    return replaced

