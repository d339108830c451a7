#!/usr/bin/env python3
"""Install the browser viewer: OHIF's published build at a pinned version, served by our server at ``/ohif/``.

Steps, each checked: ``npm pack`` fetches ``@ohif/app`` from the npm registry (the only network it needs); the
tarball's SHA-512 must equal the pinned integrity; its ``dist/`` is unpacked without what we never serve
(the in-browser ONNX runtime, the slide-microscopy viewer, the demo config); the build, made for ``/``, is
re-based to ``/ohif/``; every text asset gets a gzip twin so the server answers compressed without work per
request. The result lands in ``viewer/ohif/`` by one rename, so a viewer is either complete or absent.
Run again, it does nothing unless the pin or this script's patches changed.

Our extension (``viewer/extension/``) and ``app-config.js`` are served by the server itself, from the source
and from its settings, so they are never stale copies.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@ohif/app"
VERSION = "3.13.2"
INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
PATCH_LEVEL = 1  # raise when the patches below change, so installed viewers are rebuilt
BASE = "/ohif/"

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "viewer" / "ohif"
STAMP = ".medicosam-viewer.json"

# Not served: the ONNX runtime of OHIF's in-browser AI tools (136 MB), the whole-slide viewer (20 MB), the
# demo data-source config (ours is generated), Netlify files and the service worker (it would cache a stale
# viewer in every clinician's browser after an update).
PRUNED = ("ort/", "dicom-microscopy-viewer/", "app-config.js", "google.js", "_headers", "_redirects",
          "serve.json", "sw.js", "init-service-worker.js")
COMPRESSED_SUFFIXES = {".js", ".css", ".html", ".json", ".wasm", ".svg", ".map", ".txt", ".xml", ".ico"}


def fail(message: str) -> None:
    print(f"install_viewer: {message}", file=sys.stderr)
    sys.exit(1)


def installed_stamp() -> dict:
    return {"package": PACKAGE, "version": VERSION, "integrity": INTEGRITY, "patch_level": PATCH_LEVEL}


def is_installed() -> bool:
    try:
        return json.loads((TARGET / STAMP).read_text()) == installed_stamp()
    except (OSError, ValueError):
        return False


def fetch_tarball(folder: Path) -> Path:
    """``npm pack`` into ``folder`` (it honours the machine's npm registry and proxy settings)."""
    if shutil.which("npm") is None:
        fail("npm is not installed: run ./scripts/install_system.sh (Debian package npm)")
    result = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(folder), "--silent"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        fail(f"npm pack {PACKAGE}@{VERSION} failed ({result.returncode}): {result.stderr.strip()[-800:]}")
    tarballs = list(folder.glob("*.tgz"))
    if len(tarballs) != 1:
        fail(f"npm pack left {len(tarballs)} tarballs in {folder}")
    return tarballs[0]


def check_integrity(tarball: Path) -> None:
    digest = hashlib.sha512()
    with tarball.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    found = "sha512-" + base64.b64encode(digest.digest()).decode()
    if found != INTEGRITY:
        fail(f"{tarball.name} has integrity {found}, expected {INTEGRITY}: not installing it")


def unpack(tarball: Path, destination: Path) -> None:
    """``package/dist/*`` → ``destination``, minus :data:`PRUNED`; regular files and folders only."""
    prefix = "package/dist/"
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            if not member.name.startswith(prefix) or not member.isfile():
                continue
            relative = member.name[len(prefix):]
            if relative.startswith(PRUNED) or relative in PRUNED:
                continue
            target = (destination / relative).resolve()
            if destination.resolve() not in target.parents:
                fail(f"refusing {member.name}: it points outside the viewer folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out)


def replace_checked(path: Path, old: str, new: str, at_least: int = 1) -> None:
    """Replace every ``old`` in ``path``; fail loudly when the build no longer holds it (a new OHIF build
    must be looked at, not half-patched)."""
    text = path.read_text(encoding="utf-8")
    count = text.count(old)
    if count < at_least:
        fail(f"{path.name}: expected '{old}' at least {at_least} time(s), found {count}: the patches need updating")
    path.write_text(text.replace(old, new), encoding="utf-8")


def rebase(root: Path) -> None:
    """The build assumes it is served at ``/``: point its page, bundles, fonts and manifest at ``/ohif/``."""
    index = root / "index.html"
    replace_checked(index, 'window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{BASE}"', at_least=2)
    replace_checked(index, 'href="/', f'href="{BASE}')
    replace_checked(index, 'src="/', f'src="{BASE}')
    # The service-worker bootstrap is pruned; its script tag would only 404.
    replace_checked(index, f'<script rel="preload" as="script" type="module" src="{BASE}init-service-worker.js"></script>', "")
    public_path = '__webpack_require__.p = "/"'  # the app bundle and each worker bundle set their own
    bundles = [p for p in root.glob("*.js") if public_path in p.read_text(encoding="utf-8", errors="replace")]
    if not any(p.name.startswith("app.bundle.") for p in bundles):
        fail("the app bundle sets no public path '/': the patches need updating")
    for bundle in bundles:
        replace_checked(bundle, public_path, f'__webpack_require__.p = "{BASE}"')
    for stylesheet in root.glob("*.css"):
        text = stylesheet.read_text(encoding="utf-8")
        stylesheet.write_text(text.replace("url(/", f"url({BASE}"), encoding="utf-8")
    manifest = root / "manifest.json"
    replace_checked(manifest, '"/assets/', f'"{BASE}assets/')


def precompress(root: Path) -> int:
    """A ``.gz`` twin beside every text asset over 1 kB; returns the bytes a first load saves."""
    saved = 0
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in COMPRESSED_SUFFIXES or path.stat().st_size < 1024:
            continue
        data = path.read_bytes()
        packed = gzip.compress(data, compresslevel=9, mtime=0)
        if len(packed) < len(data):
            path.with_name(path.name + ".gz").write_bytes(packed)
            saved += len(data) - len(packed)
    return saved


def install() -> Path:
    if is_installed():
        print(f"OHIF {VERSION} already installed in {TARGET.relative_to(REPO)}")
        return TARGET
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=TARGET.parent, prefix=".ohif-install-") as work:
        work_dir = Path(work)
        print(f"Fetching {PACKAGE}@{VERSION} from the npm registry ...")
        tarball = fetch_tarball(work_dir)
        check_integrity(tarball)
        staged = work_dir / "ohif"
        staged.mkdir()
        unpack(tarball, staged)
        rebase(staged)
        saved = precompress(staged)
        (staged / STAMP).write_text(json.dumps(installed_stamp(), indent=1))
        old = work_dir / "previous"
        if TARGET.exists():
            TARGET.rename(old)  # removed with the temporary folder
        staged.rename(TARGET)
    size = sum(p.stat().st_size for p in TARGET.rglob("*") if p.is_file() and p.suffix != ".gz")
    print(f"OHIF {VERSION} installed in {TARGET.relative_to(REPO)} ({size / 1e6:.0f} MB, gzip saves "
          f"{saved / 1e6:.0f} MB); served at {BASE}")
    return TARGET


if __name__ == "__main__":
    install()
