"""No request can make the datastore write, create or delete anything outside its folder.

Every spelling of "somewhere else" (``..``, absolute paths, backslashes, percent-encoded traversal sent
raw in the URL and sent literally, NUL, control characters, hidden and over-long names) is sent in every
request value that becomes a path: the tag and image id of ``PUT /datastore/label``, the image id of
``PUT /datastore/image``, the file names of both uploads, and the ids of the two DELETE endpoints. Each
must get a 4xx, and the folders around the datastore (the datastore is six levels deep in the test's
folder, so every ``../`` lands somewhere that is watched) must be exactly as they were.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
import requests

from conftest import asymmetric_array, write_volume

from .harness import running_server

pytestmark = pytest.mark.server

IMAGE = "scan"
SHAPE = (12, 10, 6)
DEPTH = ("a", "b", "c", "d", "e")  # the datastore is root/a/b/c/d/e/studies


def _spellings(root: Path, marker: str) -> List[Tuple[str, str]]:
    """(case id, value as the server receives it) for one parameter; ``marker`` names where an escape
    would land, so a search for it finds any file written anywhere."""
    return [
        ("parent", ".."),
        ("dot", "."),
        ("up1", f"../{marker}"),
        ("up4", f"../../../../{marker}"),
        ("up12", "../" * 12 + f"tmp/{marker}"),
        ("inner", f"final/../../../{marker}"),
        ("absolute", str(root / marker)),
        ("backslashes", f"..\\..\\{marker}"),
        ("encoded-once", f"%2e%2e%2f%2e%2e%2f{marker}"),
        ("encoded-mixed", f"..%2f..%2f{marker}"),
        ("encoded-twice", f"%252e%252e%252f{marker}"),
        ("nul", f"{marker}\x00.nii.gz"),
        ("newline", f"{marker}\n"),
        ("hidden", f".{marker}"),
        ("too-long", marker + "x" * 300),
    ]


# Traversal that only a URL decoder produces: sent raw, so the server itself decodes it to "../".
RAW_URL_SPELLINGS = {
    "url-encoded": "%2e%2e%2f%2e%2e%2f{marker}",
    "url-encoded-upper": "%2E%2E%2F%2E%2E%2F{marker}",
    "url-encoded-backslash": "..%5c..%5c{marker}",
    "url-encoded-nul": "{marker}%00",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("confinement")
    studies = root.joinpath(*DEPTH, "studies")
    studies.mkdir(parents=True)
    write_volume(studies / f"{IMAGE}.nii.gz", asymmetric_array(SHAPE))
    label = write_volume(root.parent / f"{root.name}-label.nii.gz", np.ones(SHAPE, dtype=np.uint8))
    logs = tmp_path_factory.mktemp("confinement-logs")
    with running_server(studies, logs / "server.log", env={"MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}) as url:
        yield {"url": url, "root": root, "studies": studies, "label": label.read_bytes()}


def tree(folder: Path, skip: Optional[Path] = None) -> Dict[str, Tuple[int, int]]:
    """Every entry below ``folder`` (not following links) with its size and modification time."""
    found = {}
    for path in [folder, *folder.rglob("*")]:
        if skip is not None and (path == skip or skip in path.parents):
            continue
        info = path.lstat()
        found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return found


class Watch:
    """What is around the datastore before a request, to compare with what is there after it."""

    def __init__(self, site: Dict, marker: str) -> None:
        self.site, self.marker = site, marker
        self.outside = tree(site["root"], skip=site["studies"])
        self.inside = tree(site["studies"])

    def nothing_written_outside(self) -> None:
        outside = tree(self.site["root"], skip=self.site["studies"])
        assert outside == self.outside
        # (MONAI Label spools each upload to /tmp/tmpXXXX<suffixes of its name>: not an escape)
        assert not any(name.startswith(self.marker) for name in os.listdir("/tmp")), "a file escaped into /tmp"

    def nothing_changed_inside(self) -> None:
        assert tree(self.site["studies"]) == self.inside


def _marker() -> str:
    return f"escape_{uuid.uuid4().hex[:10]}"


def _put_label(site, image=IMAGE, tag="final", filename="label.nii.gz", raw_query: str = ""):
    url = f"{site['url']}/datastore/label"
    kwargs = dict(data={"params": json.dumps({"label_info": [{"name": "x", "idx": 1}]})},
                  files={"label": (filename, site["label"])}, timeout=30)
    if raw_query:
        return requests.put(f"{url}?{raw_query}", **kwargs)
    return requests.put(url, params={"image": image, "tag": tag}, **kwargs)


def _put_image(site, image: Optional[str] = "new_image", filename="upload.nii.gz", raw_query: str = ""):
    url = f"{site['url']}/datastore/image"
    kwargs = dict(data={"params": "{}"}, files={"file": (filename, site["label"])}, timeout=30)
    if raw_query:
        return requests.put(f"{url}?{raw_query}", **kwargs)
    return requests.put(url, params={"image": image} if image is not None else {}, **kwargs)


def _delete_label(site, label_id=IMAGE, tag="final", raw_query: str = ""):
    url = f"{site['url']}/datastore/label"
    if raw_query:
        return requests.delete(f"{url}?{raw_query}", timeout=30)
    return requests.delete(url, params={"id": label_id, "tag": tag}, timeout=30)


def _delete_image(site, image_id, raw_query: str = ""):
    url = f"{site['url']}/datastore/image"
    if raw_query:
        return requests.delete(f"{url}?{raw_query}", timeout=30)
    return requests.delete(url, params={"id": image_id}, timeout=30)


PARAMETERS = {
    # parameter: (send one value, send a raw query string with that value)
    "label tag": (lambda s, v: _put_label(s, tag=v), lambda s, q: _put_label(s, raw_query=f"image={IMAGE}&tag={q}")),
    "label image id": (lambda s, v: _put_label(s, image=v), lambda s, q: _put_label(s, raw_query=f"image={q}&tag=final")),
    "uploaded image id": (lambda s, v: _put_image(s, image=v), lambda s, q: _put_image(s, raw_query=f"image={q}")),
    "deleted label tag": (lambda s, v: _delete_label(s, tag=v), lambda s, q: _delete_label(s, raw_query=f"id={IMAGE}&tag={q}")),
    "deleted label id": (lambda s, v: _delete_label(s, label_id=v), lambda s, q: _delete_label(s, raw_query=f"id={q}&tag=final")),
    "deleted image id": (lambda s, v: _delete_image(s, v), lambda s, q: _delete_image(s, None, raw_query=f"id={q}")),
}
SPELLING_IDS = [name for name, _ in _spellings(Path("/x"), "m")]


@pytest.mark.parametrize("spelling", SPELLING_IDS)
@pytest.mark.parametrize("parameter", list(PARAMETERS))
def test_each_traversal_spelling_in_each_parameter_is_refused_and_writes_nothing(site, parameter, spelling):
    marker = _marker()
    value = dict(_spellings(site["root"], marker))[spelling]
    watch = Watch(site, marker)
    response = PARAMETERS[parameter][0](site, value)
    watch.nothing_written_outside()
    watch.nothing_changed_inside()
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"], "a refusal says why"


@pytest.mark.parametrize("spelling", list(RAW_URL_SPELLINGS))
@pytest.mark.parametrize("parameter", list(PARAMETERS))
def test_traversal_that_only_url_decoding_produces_is_refused(site, parameter, spelling):
    marker = _marker()
    watch = Watch(site, marker)
    response = PARAMETERS[parameter][1](site, RAW_URL_SPELLINGS[spelling].format(marker=marker))
    watch.nothing_written_outside()
    watch.nothing_changed_inside()
    assert 400 <= response.status_code < 500, response.text


# Upload file names: clients send a local path there (MONAI Label's own client, which Slicer uses, sends
# its temporary file's full path), so the check in front of the endpoint (lib/guards/, with
# medicosam_app.security.safe_upload_filename) cuts it to its last component; what is left must be a plain
# name, since MONAI Label takes the image id and the label's extension from it.
CUT_TO_THEIR_FILE_NAME = {"up1", "up4", "up12", "inner", "absolute", "backslashes"}


def _send_upload(site, upload: str, filename: str):
    if upload == "label":
        return _put_label(site, filename=filename)
    return _put_image(site, image=None, filename=filename)


@pytest.mark.parametrize("upload, spelling", [(u, s) for s in SPELLING_IDS for u in ("label", "image")])
def test_upload_file_names_never_write_outside_the_datastore(site, upload, spelling):
    marker = _marker()
    filename = dict(_spellings(site["root"], marker))[spelling] + ("" if spelling == "nul" else ".nii.gz")
    watch = Watch(site, marker)
    _send_upload(site, upload, filename)
    watch.nothing_written_outside()


@pytest.mark.parametrize("upload", ["label", "image"])
@pytest.mark.parametrize("spelling", [s for s in SPELLING_IDS if s not in CUT_TO_THEIR_FILE_NAME])
def test_upload_file_names_that_are_no_plain_name_are_refused(site, upload, spelling):
    marker = _marker()
    filename = dict(_spellings(site["root"], marker))[spelling] + ("" if spelling == "nul" else ".nii.gz")
    watch = Watch(site, marker)
    response = _send_upload(site, upload, filename)
    assert response.status_code == 422, response.text
    assert "file's name" in response.json()["detail"]
    watch.nothing_changed_inside()


@pytest.mark.parametrize("spelling", sorted(CUT_TO_THEIR_FILE_NAME))
def test_an_uploaded_image_named_by_a_path_gets_the_id_of_its_file_name(site, spelling):
    marker = _marker()
    filename = dict(_spellings(site["root"], marker))[spelling] + ".nii.gz"
    watch = Watch(site, marker)
    response = _send_upload(site, "image", filename)
    assert response.status_code == 200, response.text
    watch.nothing_written_outside()
    assert (site["studies"] / f"{marker}.nii.gz").read_bytes() == site["label"]
    assert _delete_image(site, marker).status_code == 200


def test_slicers_client_saves_a_label_from_its_temporary_file(site, tmp_path):
    """MONAI Label's Python client, as 3D Slicer's module calls it: the label's local path is the file name."""
    from monailabel.client import MONAILabelClient

    local = tmp_path / "slicer-tmp" / "label.nii.gz"
    local.parent.mkdir()
    local.write_bytes(site["label"])
    client = MONAILabelClient(site["url"], tmpdir=str(tmp_path))
    client.save_label(IMAGE, str(local), tag="from_slicer", params={"label_info": [{"name": "x", "idx": 1}]})
    assert (site["studies"] / "labels" / "from_slicer" / f"{IMAGE}.nii.gz").read_bytes() == site["label"]
    assert _delete_label(site, tag="from_slicer").status_code == 200


def test_a_symlink_out_of_the_labels_folder_is_not_followed(site):
    """A tag folder that is a link to elsewhere (left by someone, or by a restore): saving into it is refused."""
    outside = site["root"] / "elsewhere"
    outside.mkdir(exist_ok=True)
    link = site["studies"] / "labels" / "linked"
    link.symlink_to(outside, target_is_directory=True)
    try:
        response = _put_label(site, tag="linked")
        assert response.status_code == 422 and "outside the datastore" in response.json()["detail"]
        assert list(outside.iterdir()) == []
    finally:
        link.unlink()


def test_plain_names_still_work(site):
    """The checks refuse paths, not ordinary names: a tag, an image id with dots and spaces, a deletion."""
    assert _put_label(site, tag="reviewed_v2").status_code == 200
    assert _put_image(site, image="1.2.840 series 7").status_code == 200
    listing = requests.get(f"{site['url']}/datastore/", params={"output": "all"}, timeout=10).json()["objects"]
    assert "reviewed_v2" in listing[IMAGE]["labels"] and "1.2.840 series 7" in listing
    assert (site["studies"] / "labels" / "reviewed_v2" / f"{IMAGE}.nii.gz").read_bytes() == site["label"]
    assert _delete_label(site, tag="reviewed_v2").status_code == 200
    assert _delete_image(site, "1.2.840 series 7").status_code == 200
    listing = requests.get(f"{site['url']}/datastore/", params={"output": "all"}, timeout=10).json()["objects"]
    assert "reviewed_v2" not in listing[IMAGE]["labels"] and "1.2.840 series 7" not in listing
    assert not (site["studies"] / "1.2.840 series 7.nii.gz").exists()
