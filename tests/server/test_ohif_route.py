"""MONAI Label's bundled OHIF (``--conf viewer monailabel``) as our server serves it: nested assets load, client-side routes get the app, nothing escapes the folder."""

from __future__ import annotations

import http.client
import os
import sys
from urllib.parse import urlparse

import pytest

from .harness import REPO, running_server

sys.path.insert(0, str(REPO / "apps" / "medicosam"))
from lib.viewer.ohif_route import ohif_folder, resolve_asset  # noqa: E402


def _get(url: str, raw_path: str):
    """GET with the path sent byte for byte (requests and browsers would normalise ``..``)."""
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    connection.putrequest("GET", raw_path, skip_host=False, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    return response.status, response.getheader("content-type", ""), response.read()


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "ohif"
    (root / "assets" / "images").mkdir(parents=True)
    (root / "index.html").write_text("<html>app</html>")
    (root / "assets" / "images" / "logo.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "assets" / "link.txt")
    return root.resolve()


@pytest.mark.parametrize("path, expected", [
    ("", "index.html"),
    ("assets/images/logo.png", "assets/images/logo.png"),
    ("viewer", "index.html"),
    ("monai-label", "index.html"),
    ("assets/missing.js", None),
    ("../secret.txt", None),
    ("assets/../../secret.txt", None),
    ("/etc/passwd", None),
    ("assets/link.txt", None),  # a symlink that leaves the folder
    ("bad\0name", None),
])
def test_resolve_asset_confines_paths(folder, path, expected):
    found = resolve_asset(folder, path)
    assert (found.relative_to(folder).as_posix() if found else None) == expected


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("ohif_route")
    (root / "studies").mkdir()
    with running_server(root / "studies", root / "server.log", env={"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint),
                                                                          "MEDICOSAM_VIEWER": "monailabel"}) as url:
        yield url


def test_nested_assets_are_served_as_files(server):
    root = ohif_folder()
    nested = sorted(p for p in root.rglob("*") if p.is_file() and len(p.relative_to(root).parts) > 1)
    assert nested, "the bundled OHIF has nested assets"
    for path in (nested[0], nested[-1], root / "app-config.js"):
        status, _, body = _get(server, "/ohif/" + path.relative_to(root).as_posix())
        assert status == 200 and body == path.read_bytes()


def test_viewer_routes_get_the_app_and_missing_assets_404(server):
    index = (ohif_folder() / "index.html").read_bytes()
    for path in ("/ohif/", "/ohif/viewer?StudyInstanceUIDs=1.2.3", "/ohif/monai-label"):
        status, content_type, body = _get(server, path)
        assert status == 200 and "text/html" in content_type and body == index
    assert _get(server, "/ohif/assets/no-such-bundle.js")[0] == 404


@pytest.mark.parametrize("path", [
    "/ohif/%2e%2e/ohif.py",
    "/ohif/%2e%2e/%2e%2e/config.py",
    "/ohif/..%2f..%2fconfig.py",
    "/ohif/assets/%2e%2e/%2e%2e/%2e%2e/__init__.py",
    "/ohif/%2fetc%2fpasswd",
    "/ohif/..%5c..%5cconfig.py",
])
def test_traversal_never_reaches_a_file_outside_the_ohif_folder(server, path):
    status, _, body = _get(server, path)
    assert status == 404, body[:200]
    assert b"import" not in body and b"root:" not in body
