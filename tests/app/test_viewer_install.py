"""scripts/install_viewer.py on a miniature OHIF build: integrity refused when wrong, pruning, re-basing to
/ohif/, gzip twins, and a build that no longer holds a patched string stops the install instead of half-patching."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def installer():
    spec = importlib.util.spec_from_file_location("install_viewer", REPO / "scripts" / "install_viewer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INDEX = ('<html><head><script>window.PUBLIC_URL="/"</script><link rel="manifest" href="/manifest.json">'
         '<script rel="preload" as="script" src="/app-config.js"></script>'
         '<script rel="preload" as="script" type="module" src="/init-service-worker.js"></script>'
         '<script>function browserImportFunction(n){return import(n)}window.PUBLIC_URL="/"</script>'
         '<script defer src="/app.bundle.0123456789abcdef.js"></script><link href="/app.bundle.css" rel="stylesheet">'
         '</head></html>')
FILES = {
    "index.html": INDEX,
    "app.bundle.0123456789abcdef.js": '/* app */ __webpack_require__.p = "/";' + " " * 2000,
    "compute.bundle.fedcba9876543210.js": 'self.x = 1; __webpack_require__.p = "/";',
    "app.bundle.css": "@font-face{src:url(/a34f9d1faa5f3315.woff2)}" + " " * 2000,
    "manifest.json": '{"icons": [{"src": "/assets/android-chrome-36x36.png"}]}',
    "app-config.js": "window.config = {demo: true}",
    "sw.js": "self.addEventListener('fetch', () => {})",
    "ort/ort-wasm.wasm": "x" * 100,
    "dicom-microscopy-viewer/viewer.js": "x",
    "assets/logo.svg": "<svg/>",
}


def _tarball(path: Path, escaping: bool = False) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in FILES.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/dist/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if escaping:
            evil = tarfile.TarInfo("package/dist/../../escape.txt")
            evil.size = 1
            archive.addfile(evil, io.BytesIO(b"x"))
    return path


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def test_a_tarball_whose_hash_differs_from_the_pin_is_refused(installer, tmp_path, capsys):
    tarball = _tarball(tmp_path / "app.tgz")
    with pytest.raises(SystemExit):
        installer.check_integrity(tarball)
    assert "expected " + installer.INTEGRITY in capsys.readouterr().err
    installer.INTEGRITY = _integrity(tarball)
    installer.check_integrity(tarball)  # the pinned hash passes


def test_unpack_prunes_rebases_and_compresses(installer, tmp_path):
    escaping = tmp_path / "ohif_escaping"
    escaping.mkdir()
    with pytest.raises(SystemExit):  # a member that climbs out of the folder stops the install
        installer.unpack(_tarball(tmp_path / "escaping.tgz", escaping=True), escaping)
    assert not (tmp_path / "escape.txt").exists()

    root = tmp_path / "ohif"
    root.mkdir()
    installer.unpack(_tarball(tmp_path / "app.tgz"), root)
    kept = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert kept == {"index.html", "app.bundle.0123456789abcdef.js", "compute.bundle.fedcba9876543210.js",
                    "app.bundle.css", "manifest.json", "assets/logo.svg"}

    installer.rebase(root)
    index = (root / "index.html").read_text()
    assert index.count('window.PUBLIC_URL="/ohif/"') == 2 and 'src="/ohif/app.bundle.' in index
    assert 'href="/ohif/manifest.json"' in index and "init-service-worker" not in index
    assert 'src="/' not in index.replace('src="/ohif/', "") and 'href="/' not in index.replace('href="/ohif/', "")
    for bundle in ("app.bundle.0123456789abcdef.js", "compute.bundle.fedcba9876543210.js"):
        assert '__webpack_require__.p = "/ohif/"' in (root / bundle).read_text()
    assert "url(/ohif/a34f9d1faa5f3315.woff2)" in (root / "app.bundle.css").read_text()
    assert '"/ohif/assets/android-chrome-36x36.png"' in (root / "manifest.json").read_text()

    assert installer.precompress(root) > 0
    twin = root / "app.bundle.0123456789abcdef.js.gz"
    assert gzip.decompress(twin.read_bytes()) == (root / "app.bundle.0123456789abcdef.js").read_bytes()
    assert not (root / "manifest.json.gz").exists()  # under 1 kB: not worth a twin


def test_a_build_without_the_expected_strings_stops_the_install(installer, tmp_path, capsys):
    root = tmp_path / "ohif"
    root.mkdir()
    (root / "index.html").write_text("<html>another build</html>")
    with pytest.raises(SystemExit):
        installer.rebase(root)
    assert "the patches need updating" in capsys.readouterr().err
