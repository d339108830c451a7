"""A full disk under the real server: label saves answer 507 and lose nothing, clicks go on.

The datastore and the server's cache (embeddings, decoder versions) sit on a small tmpfs of their own, the
way a hospital server keeps its label store on one volume. A ballast file fills that file system to a chosen
number of free bytes, so writes fail with the kernel's own ENOSPC, wherever they happen: the uploaded label
copied in, the index rewritten, an embedding stored. Mounting needs root (CI runs as root); elsewhere the
test says so and skips.

100 saves run through four phases: room, no room, room for the label file but not for the index written after it, room again. Every save
must answer 200 or 507; each image's label must be, voxel for voxel, the last one answered 200, before and
after a restart; the index must parse; no temporary file may be left. Clicks on an image the server has not
embedded yet must still answer while the disk is full (the embedding is then kept in memory only).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Iterator

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from conftest import asymmetric_array, random_label_bytes, small_filesystem, write_volume

from .harness import running_server, slicer_client, wait_for_model

pytestmark = pytest.mark.server
IMAGES = ["knee", "wrist", "ankle", "elbow"]
SHAPES = {"knee": (40, 30, 12), "wrist": (36, 28, 10), "ankle": (32, 40, 8), "elbow": (30, 24, 14)}
INDEX = "datastore_v2.json"
PAGE = 4096


def pages(size: int) -> int:
    """What a file of ``size`` bytes takes on tmpfs: whole pages."""
    return -(-size // PAGE) * PAGE


@pytest.fixture()
def small_disk(tmp_path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "disk", "24m") as point:
        yield point


def free_bytes(folder: Path) -> int:
    found = os.statvfs(folder)
    return found.f_bavail * found.f_frsize


def fill_to(folder: Path, free: int) -> None:
    """Grow or shrink ``folder/ballast`` until ``free`` bytes are left on its file system."""
    ballast = folder / "ballast"
    size = ballast.stat().st_size if ballast.exists() else 0
    target = max(0, size + free_bytes(folder) - free)
    with open(ballast, "ab") as handle:
        handle.truncate(target)
        if target > size:
            os.posix_fallocate(handle.fileno(), 0, target)
    assert abs(free_bytes(folder) - free) <= 8192 or target == 0


def saved_label(url: str, image: str) -> np.ndarray:
    response = requests.get(f"{url}/datastore/label", params={"label": image, "tag": "final"}, timeout=30)
    assert response.status_code == 200, response.text
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "label.nii.gz"
        path.write_bytes(response.content)
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def as_array(data: bytes) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "label.nii.gz"
        path.write_bytes(data)
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def click(url: str, image: str, tmp_path: Path) -> int:
    """One foreground click through the Slicer client; the status the server answered."""
    client = slicer_client(url, tmp_path / f"click-{image}")
    try:
        client.infer("medicosam_interactive", image,
                     {"foreground": [[10, 12, 3]], "background": [], "result_extension": ".nrrd",
                      "result_dtype": "uint8"})
    except Exception as error:  # the client raises on any non-200 answer
        return int(getattr(error, "status_code", 0) or 500)
    return 200


def test_a_full_disk_answers_507_and_loses_no_acknowledged_label(small_disk, tiny_checkpoint, tmp_path):
    studies = small_disk / "studies"
    studies.mkdir()
    images: Dict[str, sitk.Image] = {}
    for n, name in enumerate(IMAGES):
        write_volume(studies / f"{name}.nii.gz", asymmetric_array(SHAPES[name], seed=n))
        images[name] = sitk.ReadImage(str(studies / f"{name}.nii.gz"))
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
           "MEDICOSAM_CACHE_DIR": str(small_disk / "cache"),
           "MEDICOSAM_AUDIT_DIR": str(tmp_path / "audit")}  # the audit trail on a volume of its own
    acknowledged: Dict[str, bytes] = {}
    statuses = []
    messages = set()
    # (saves, free bytes): room; none; room for the label file but not for the index after it; room again.
    phases = [(25, None), (25, 0), (25, "label only"), (25, None)]
    with running_server(studies, tmp_path / "server.log", env=env) as url:
        assert wait_for_model(url)["available"]
        assert click(url, "knee", tmp_path) == 200
        save = 0
        for count, free in phases:
            if free is None:
                (small_disk / "ballast").unlink(missing_ok=True)
            elif free == 0:
                fill_to(small_disk, free)
            if free == 0:  # nothing can be written: a click on an image not yet embedded still answers
                assert click(url, "wrist", tmp_path) == 200
                ready = requests.get(f"{url}/readyz", timeout=10)
                assert ready.status_code == 503 and "disk full" in ready.text, ready.text
            for _ in range(count):
                image = IMAGES[save % len(IMAGES)]
                data = random_label_bytes(images[image], seed=save)
                if free == "label only":  # the label's pages fit, the index's new copy does not
                    fill_to(small_disk, pages(len(data)) + pages((studies / INDEX).stat().st_size) - PAGE)
                response = requests.put(f"{url}/datastore/label", params={"image": image, "tag": "final"},
                                        data={"params": json.dumps({"label_info": [{"name": "bone", "idx": 1}]})},
                                        files={"label": ("label.nii.gz", data)}, timeout=60)
                statuses.append(response.status_code)
                assert response.status_code in (200, 507), response.text
                if response.status_code == 200:
                    acknowledged[image] = data
                else:
                    messages.add(response.json()["detail"])
                save += 1
        assert statuses[:25] == [200] * 25 and statuses[25:75] == [507] * 50 and statuses[75:] == [200] * 25
        for image, data in acknowledged.items():
            assert np.array_equal(saved_label(url, image), as_array(data)), image
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 200  # room again: ready again
    assert any("disk" in message and "full" in message and "free space" in message for message in messages)
    log = (tmp_path / "server.log").read_text()
    assert "Could not store embedding" in log  # the click while full: embedded, kept in memory only
    assert "Answered 507" in log or "answered 507" in log  # the administrator reads why
    index = json.loads((studies / INDEX).read_text())
    assert set(index["objects"]) == set(IMAGES)
    leftovers = [p.name for p in studies.rglob("*") if p.name.startswith(".saving_") or p.suffix == ".part"]
    assert leftovers == []

    # A restart on the same folder lists the same labels, voxel for voxel: no refused save came back.
    with running_server(studies, tmp_path / "restart.log", env=env) as url:
        for image, data in acknowledged.items():
            assert np.array_equal(saved_label(url, image), as_array(data)), image
