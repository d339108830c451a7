"""Our viewer at /ohif/: OHIF 3.13 re-based, gzip-compressed, its config written by the server, our extension
served from its source; nothing outside the folders; a server without the viewer says how to install it."""

from __future__ import annotations

import gzip
import json
import re
import sys

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient

from .harness import REPO, running_server
from .test_ohif_route import _get

sys.path.insert(0, str(REPO / "apps" / "medicosam"))
from lib.viewer.ohif_route import ROUTE  # noqa: E402
from lib.viewer.viewer_config import EXTENSION_URL, viewer_app_config  # noqa: E402
from lib.viewer.viewer_route import BUILD, EXTENSION, serve_viewer  # noqa: E402


def _config(text: str) -> dict:
    return json.loads(text.split("window.config = ", 1)[1].rstrip().rstrip(";"))


def test_app_config_reads_the_pacs_through_the_server_unless_told_otherwise():
    config = _config(viewer_app_config())
    assert config["extensions"] == [EXTENSION_URL] and config["routerBasename"] == "/ohif"
    source = config["dataSources"][0]["configuration"]
    assert source["qidoRoot"] == "/proxy/dicom/qido" and source["wadoRoot"] == "/proxy/dicom/wado"
    direct = _config(viewer_app_config("https://pacs.example.org/dicom-web/"))["dataSources"][0]["configuration"]
    assert direct["qidoRoot"] == direct["wadoRoot"] == "https://pacs.example.org/dicom-web"


def _app(build, extension) -> TestClient:
    app = FastAPI()
    app.add_api_route(ROUTE, lambda path: "MONAI Label's", methods=["GET"])  # the route we replace
    serve_viewer(app, lambda: "window.config = {};", build=build, extension=extension)
    return TestClient(app)


def test_a_server_without_the_viewer_says_how_to_install_it(tmp_path):
    (tmp_path / "extension").mkdir()
    (tmp_path / "extension" / "index.js").write_text("export default {};")
    client = _app(tmp_path / "not-installed", tmp_path / "extension")
    page = client.get("/ohif/segmentation")
    assert page.status_code == 503 and "scripts/install.sh" in page.text
    assert client.get("/ohif/medicosam/index.js").status_code == 200  # the extension does not need the build
    assert client.get("/ohif/app-config.js").text == "window.config = {};"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    if not (BUILD / "index.html").is_file():
        pytest.fail("the viewer is not installed: run ./scripts/install.sh (it runs scripts/install_viewer.py)")
    root = tmp_path_factory.mktemp("viewer_route")
    (root / "studies").mkdir()
    with running_server(root / "studies", root / "server.log", env={"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint)}) as url:
        yield url


def test_the_viewer_page_is_ohif_rebased_to_ohif(server):
    for route in ("/ohif/", "/ohif/segmentation?StudyInstanceUIDs=1.2.3", "/ohif/viewer"):
        answer = requests.get(server + route, timeout=30)
        assert answer.status_code == 200 and answer.headers["content-encoding"] == "gzip"
        assert answer.headers["cache-control"] == "no-cache"
        assert 'window.PUBLIC_URL="/ohif/"' in answer.text
        assert not re.search(r'(src|href)="/(?!ohif/)', answer.text), "an asset outside /ohif/"
    bundle = re.search(r'src="/ohif/(app\.bundle\.[0-9a-f]+\.js)"', answer.text).group(1)
    compressed = requests.get(f"{server}/ohif/{bundle}", timeout=30, stream=True)
    assert compressed.headers["content-encoding"] == "gzip" and "immutable" in compressed.headers["cache-control"]
    raw = gzip.decompress(compressed.raw.read())
    assert raw == (BUILD / bundle).read_bytes() and b'__webpack_require__.p = "/ohif/"' in raw
    status, _, plain = _get(server, f"/ohif/{bundle}")  # a client that does not accept gzip gets the file
    assert status == 200 and plain == raw


def test_config_and_extension_come_from_the_server(server):
    config = requests.get(f"{server}/ohif/app-config.js", timeout=30)
    assert config.headers["content-type"].startswith("text/javascript") and EXTENSION_URL in config.text
    for module in sorted(EXTENSION.glob("*.js")):
        answer = requests.get(f"{server}/ohif/medicosam/{module.name}", timeout=30)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/javascript")
        assert answer.headers["content-encoding"] == "gzip" and answer.content == module.read_bytes()
    assert requests.get(f"{server}/ohif/medicosam/missing.js", timeout=30).status_code == 404


@pytest.mark.parametrize("path", [
    "/ohif/medicosam/%2e%2e/ohif/index.html",
    "/ohif/medicosam/..%2f..%2fREADME.md",
    "/ohif/%2e%2e/extension/index.js",
    "/ohif/%2e%2e/%2e%2e/README.md",
    "/ohif/index.html.gz",
    "/ohif/%2fetc%2fpasswd",
])
def test_nothing_outside_the_viewer_folders_is_served(server, path):
    status, _, body = _get(server, path)
    assert status == 404, (path, body[:200])


def test_info_says_what_each_model_offers_per_layout(server):
    info = requests.get(f"{server}/info/", timeout=30).json()
    table = info["capabilities"]
    assert set(table) == {"medicosam_interactive", "medicosam_3d", "medicosam_semantic", "medicosam_instances"}
    assert table["medicosam_interactive"]["layouts"]["plane"]["prompts"] == ["point", "box"]
    assert table["medicosam_3d"]["layouts"]["volume"]["propagates"] == "slices"
    assert table["medicosam_3d"]["layouts"]["cine"]["propagates"] == "frames"
    assert "plane" not in table["medicosam_3d"]["layouts"] and "stack" not in table["medicosam_3d"]["layouts"]
    semantic_labels = info["models"]["medicosam_semantic"]["labels"]
    colors = table["medicosam_semantic"]["label_colors"]
    assert set(colors) == set(semantic_labels) and len({tuple(c) for c in colors.values()}) == len(colors)
