"""``/ohif/``: our viewer — OHIF's published build (``scripts/install_viewer.py``) with the MedicoSAM extension.

Three sources behind one route, each confined to its folder by :func:`resolve_asset`:

- ``/ohif/app-config.js`` is written per request from the server's settings (:mod:`lib.viewer.viewer_config`);
- ``/ohif/medicosam/*`` is the extension, served from its source folder ``viewer/extension/``;
- everything else is the installed OHIF build in ``viewer/ohif/``; a client-side route (``/ohif/segmentation``)
  gets ``index.html``.

Answers are gzip-compressed when the browser accepts it: the build's assets from the ``.gz`` twins the
installer wrote, the small extension files on the fly. Content-hashed bundles are cached for a year; the page,
the config and the extension are revalidated on every load, so an update reaches clinicians at once.
"""

from __future__ import annotations

import gzip
import logging
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from monailabel.utils.others.generic import get_mime_type

from .ohif_route import replace_viewer_route, resolve_asset

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[4]
BUILD = REPO / "viewer" / "ohif"
EXTENSION = REPO / "viewer" / "extension"
EXTENSION_PREFIX = "medicosam/"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

NOT_INSTALLED = """<!doctype html><html><head><title>Viewer not installed</title></head><body>
<h1>The MedicoSAM viewer is not installed on this server</h1>
<p>Run <code>./scripts/install.sh</code> (or <code>.venv/bin/python scripts/install_viewer.py</code>) in the
server's folder, then reload this page. Slicer and the REST API work without it.</p></body></html>"""


def _media_type(path: Path) -> str:
    if path.suffix in (".js", ".mjs"):
        return "text/javascript; charset=utf-8"  # module scripts must be served as JavaScript
    if path.suffix == ".wasm":
        return "application/wasm"
    return get_mime_type(str(path))


def _accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


def _cache_control(path: Path) -> str:
    # Bundles carry a content hash in their name (1483.bundle.256a358f0af21ca9.js, 0ddf166f7a343eda.wasm).
    stem = path.name.split(".")
    hashed = any(len(part) == 16 and all(c in "0123456789abcdef" for c in part) for part in stem)
    return IMMUTABLE if hashed else REVALIDATE


@lru_cache(maxsize=64)
def _gzipped(path: str, mtime_ns: int, size: int) -> bytes:
    return gzip.compress(Path(path).read_bytes(), compresslevel=6, mtime=0)


def _answer_file(request: Request, file: Path, cache_control: str) -> Response:
    headers = {"Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    media_type = _media_type(file)
    if _accepts_gzip(request):
        twin = file.with_name(file.name + ".gz")
        if twin.is_file():
            headers["Content-Encoding"] = "gzip"
            return FileResponse(str(twin), media_type=media_type, headers=headers)
        if file.stat().st_size <= 2 << 20 and file.suffix in (".js", ".css", ".html", ".json", ".svg"):
            stat = file.stat()
            headers["Content-Encoding"] = "gzip"
            return Response(_gzipped(str(file), stat.st_mtime_ns, stat.st_size), media_type=media_type, headers=headers)
    return FileResponse(str(file), media_type=media_type, headers=headers)


def serve_viewer(app: FastAPI, app_config: Callable[[], str], build: Optional[Path] = None,
                 extension: Optional[Path] = None) -> None:
    """Replace MONAI Label's ``/ohif/`` route of ``app`` by ours. ``app_config`` writes ``app-config.js``."""
    build = (build or BUILD).resolve()
    extension = (extension or EXTENSION).resolve()

    def get_viewer(path: str, request: Request) -> Response:
        if path == "app-config.js":
            return Response(app_config(), media_type="text/javascript; charset=utf-8",
                            headers={"Cache-Control": REVALIDATE})
        if path.startswith(EXTENSION_PREFIX):
            file = resolve_asset(extension, path[len(EXTENSION_PREFIX):])
            if file is None or not file.is_file():
                return Response('{"detail": "Resource not found"}', status_code=404, media_type="application/json")
            return _answer_file(request, file, REVALIDATE)
        if not (build / "index.html").is_file():
            return HTMLResponse(NOT_INSTALLED, status_code=503)
        file = resolve_asset(build, path)
        if file is None or file.name.endswith(".gz"):
            return Response('{"detail": "Resource not found"}', status_code=404, media_type="application/json")
        return _answer_file(request, file, _cache_control(file) if file.name != "index.html" else REVALIDATE)

    replaced = replace_viewer_route(app, get_viewer)
    if not (build / "index.html").is_file():
        logger.warning("The MedicoSAM viewer is not installed (%s is missing): /ohif/ says how to install it", build)
    logger.info("MedicoSAM viewer served at /ohif/ from %s and %s (%d route(s) replaced)", build, extension, replaced)
