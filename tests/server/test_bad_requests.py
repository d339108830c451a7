"""Malformed and hostile requests against the real server: each one gets a 4xx with a message, never a 500.

One server (tiny random SAM, an oblique volume) serves the whole module. A Slicer-style click is made
first; after every case of the table has been sent, the server must still answer the same click with the
same mask, voxel for voxel.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from conftest import asymmetric_array, write_volume

from .harness import running_server, wait_for_model

pytestmark = pytest.mark.server

SHAPE = (40, 30, 12)  # the "oblique" image: slices along k run 0..11
CLICK = {"foreground": [[30, 7, 5]], "background": [], "slice": 5, "label": "fuzz", "client_id": "fuzzer"}
SLICER_INFER_PARAMS = {"result_extension": ".nrrd", "result_dtype": "uint8"}


# -- files the cases upload, made on demand ---------------------------------------------------------


def _volume_bytes(array: np.ndarray) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_volume(Path(folder) / "v.nii.gz", array).read_bytes()


def label_of_wrong_size() -> bytes:
    return _volume_bytes(np.ones((10, 10, 10), dtype=np.uint8))


def label_of_right_size() -> bytes:
    return _volume_bytes(np.zeros(SHAPE, dtype=np.uint8))


def text_pretending_to_be_nifti() -> bytes:
    return gzip.compress(b"this is not an image\n" * 20)


TAR_ESCAPE = "escaped_from_session_tar.txt"  # MONAI Label unpacks into a new folder of the temp dir


def tar_escaping_its_folder() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"owned"
        member = tarfile.TarInfo(f"../{TAR_ESCAPE}")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


Upload = Tuple[str, Union[bytes, Callable[[], bytes]]]


@dataclass
class Case:
    """One bad request and the answer it must get."""

    name: str
    method: str
    path: str
    status: Union[int, Tuple[int, ...]]
    message: str = ""  # a piece of the ``detail`` the client shows
    query: Dict[str, Any] = field(default_factory=dict)
    params: Optional[Union[str, Dict[str, Any]]] = None  # the multipart ``params`` field (text as is, dict as JSON)
    form: Dict[str, str] = field(default_factory=dict)  # other multipart text fields
    files: Dict[str, Upload] = field(default_factory=dict)  # multipart file fields
    body: Any = None  # a JSON body (a str is sent as raw text)

    def send(self, url: str) -> requests.Response:
        fields: Dict[str, Any] = {}
        if self.params is not None:
            text = self.params if isinstance(self.params, str) else json.dumps(self.params)
            fields["params"] = (None, text)
        fields.update({k: (None, v) for k, v in self.form.items()})
        for key, (filename, content) in self.files.items():
            fields[key] = (filename, content() if callable(content) else content)
        kwargs: Dict[str, Any] = {"params": self.query, "timeout": 60}
        if fields:
            kwargs["files"] = fields
        if isinstance(self.body, str):
            kwargs["data"] = self.body
            kwargs["headers"] = {"Content-Type": "application/json"}
        elif self.body is not None:
            kwargs["json"] = self.body
        return requests.request(self.method, url + self.path, **kwargs)


def infer(name: str, params: Union[str, Dict[str, Any]], status: Union[int, Tuple[int, ...]], message: str = "",
          model: str = "medicosam_interactive", image: Optional[str] = "oblique", **query: Any) -> Case:
    """A click (or 3D/semantic request) as Slicer sends it, with ``params`` replaced."""
    if image is not None:
        query["image"] = image
    return Case(name, "POST", f"/infer/{model}", status, message, query=query, params=params)


def click(name: str, status: int, message: str = "", **changes: Any) -> Case:
    """The reference click with some keys changed (``None`` removes a key)."""
    params = {k: v for k, v in {**CLICK, **changes}.items() if v is not None}
    return infer(name, params, status, message)


def save_label(name: str, status: Union[int, Tuple[int, ...]], message: str = "", image: str = "oblique",
               params: Any = None, label: Optional[Upload] = ("label.nii.gz", label_of_right_size), tag: str = "fuzz") -> Case:
    """A label save as Slicer sends it, with one thing wrong."""
    params = {"label_info": [{"name": "fuzz", "idx": 1}]} if params is None else params
    files = {"label": label} if label is not None else {}
    return Case(name, "PUT", "/datastore/label", status, message, query={"image": image, "tag": tag},
                params=params, files=files)


POINTS_OUTSIDE = "lies outside the image"
ESCAPING_IMAGE_ID, ESCAPING_TAG = "../escaped", "../../escaped_label"

CASES = [
    # -- 2D clicks: params that are not a JSON object -----------------------------------------------
    infer("params broken json", '{"foreground": [[30, 7, 5]', 400, "not valid JSON"),
    infer("params a list", "[[30, 7, 5]]", 422, "must be a JSON object"),
    infer("params a number", "42", 422, "must be a JSON object"),
    infer("params a string", '"foreground"', 422, "must be a JSON object"),
    infer("params null", "null", 422, "must be a JSON object"),
    infer("params deeply nested", "[" * 100000 + "]" * 100000, 400, "params"),
    infer("params of 2 MB", json.dumps({**CLICK, "padding": "x" * 2_000_000}), (400, 413), ""),
    # -- the slicing axis ----------------------------------------------------------------------------
    click("axis 3", 422, "'axis' must be an integer between 0 and 2", axis=3),
    click("axis -1", 422, "'axis'", axis=-1),
    click("axis x", 422, "'axis'", axis="x"),
    click("axis true", 422, "'axis'", axis=True),
    click("axis 2.5", 422, "'axis'", axis=2.5),
    # -- points ---------------------------------------------------------------------------------------
    click("point outside the image", 422, POINTS_OUTSIDE, foreground=[[400, 7, 5]]),
    click("point at -1", 422, POINTS_OUTSIDE, foreground=[[-1, 7, 5]]),
    click("point with 2 coordinates", 422, "[i, j, k]", foreground=[[30, 7]]),
    click("point with 4 coordinates", 422, "[i, j, k]", foreground=[[30, 7, 5, 1]]),
    infer("point NaN", '{"foreground": [[NaN, 7, 5]], "slice": 5}', 422, "finite"),
    infer("point Infinity", '{"foreground": [[30, Infinity, 5]], "slice": 5}', 422, "finite"),
    click("coordinate 1e999 as text", 422, "finite", foreground=[["1e999", 7, 5]]),
    click("coordinate true", 422, "must be a number", foreground=[[True, 7, 5]]),
    click("coordinate an object", 422, "must be a number", foreground=[[{"x": 1}, 7, 5]]),
    click("foreground a string", 422, "list of voxel indices", foreground="30,7,5"),
    click("foreground an object", 422, "list of voxel indices", foreground={"0": [30, 7, 5]}),
    click("background point outside", 422, POINTS_OUTSIDE, background=[[3, 3, 99]]),
    click("5000 points", 413, "at most", foreground=[[30, 7, 5]] * 5000),
    click("no prompt", 422, "No prompt", foreground=[]),
    click("only background", 422, "foreground point", foreground=[], background=[[3, 3, 5]]),
    # -- the ROI box ------------------------------------------------------------------------------------
    click("roi flat", 422, "flat", foreground=[], roi=[5, 5, 2, 9, 0, 6], slice=3),
    click("roi outside", 422, POINTS_OUTSIDE, foreground=[], roi=[100, 120, 2, 9, 0, 6], slice=3),
    click("roi reversed on other slices", 422, "covers slices", foreground=[], roi=[20, 10, 9, 2, 11, 8], slice=3),
    click("roi of 5 numbers", 422, "[i0, i1, j0, j1, k0, k1]", roi=[1, 2, 3, 4, 5]),
    click("roi a string", 422, "[i0, i1, j0, j1, k0, k1]", roi="1,2,3,4,5,6"),
    infer("roi NaN", '{"roi": [1, NaN, 2, 9, 0, 6], "slice": 3}', 422, "finite"),
    # -- the slice --------------------------------------------------------------------------------------
    click("slice -1", 422, "outside the image", slice=-1, foreground=[], roi=[5, 20, 2, 9, 0, 11]),
    click("slice beyond the volume", 422, "outside the image", slice=12),
    click("slice 2.5", 422, "'slice' must be an integer", slice=2.5),
    click("slice true", 422, "'slice' must be an integer", slice=True),
    click("slice a word", 422, "'slice' must be an integer", slice="five"),
    # -- booleans and names -------------------------------------------------------------------------
    click("reset_state maybe", 422, "'reset_state' must be true or false", reset_state="maybe"),
    click("reset_state an object", 422, "'reset_state' must be true or false", reset_state={}),
    click("reset_state 2", 422, "'reset_state' must be true or false", reset_state=2),
    click("result_compress a list", 422, "'result_compress' must be true or false", result_compress=[False]),
    click("label an object", 422, "'label' must be a string", label={"name": "x"}),
    click("save_label maybe", 422, "'save_label' must be true or false", save_label="maybe"),
    click("label_tag a list", 422, "'label_tag' must be a string", label_tag=["final"]),
    click("timeout a word", 422, "'timeout' must be a number", timeout="soon"),
    click("client_id a list", 422, "'client_id' must be a string", client_id=[1]),
    # -- which image, which model ---------------------------------------------------------------------
    infer("empty image id", CLICK, 422, "image=<id>", image=""),
    infer("no image at all", CLICK, 422, "image=<id>", image=None),
    infer("unknown image", CLICK, 404, "not in the datastore", image="no-such-image"),
    infer("image id with ../", CLICK, 404, "not in the datastore", image="../oblique"),
    infer("image id an absolute path", CLICK, 404, "not in the datastore", image="/etc/passwd"),
    infer("image id with NUL", CLICK, 422, "NUL", image="obl\x00ique"),
    infer("image id of 5000 characters", CLICK, 422, "at most", image="x" * 5000),
    infer("params image overrides to a path", {**CLICK, "image": "/etc/passwd"}, 404, "not in the datastore"),
    infer("params forges a session", {**CLICK, "session": {"image": "/etc/passwd"}}, 422, "set by the server"),
    infer("params forges image_id", {**CLICK, "image_id": "other"}, 422, "set by the server"),
    infer("unknown model", CLICK, 404, "no model 'nope'", model="nope"),
    infer("params names an unknown model", {**CLICK, "model": "nope"}, 404, "no model 'nope'"),
    infer("unknown output type", CLICK, 422, "", output="bogus"),
    infer("dicom_seg from a folder datastore", CLICK, 422, "DICOMweb", output="dicom_seg"),
    infer("unknown session", CLICK, 404, "not found", image=None, session_id="4f1e8a7c-0000-11ee-8000-000000000000"),
    infer("session id with ../", CLICK, 404, "not found", image=None, session_id="../../etc"),
    Case("image uploaded with the click", "POST", "/infer/medicosam_interactive", 422, "datastore only",
         params=CLICK, files={"file": ("x.nii.gz", label_of_right_size)}),
    Case("label file sent with the click", "POST", "/infer/medicosam_interactive", 422, "no label file",
         query={"image": "oblique"}, params=CLICK, files={"label": ("x.bin", b"\x00" * 10)}),
    # -- 3D propagation -------------------------------------------------------------------------------
    infer("3d axis 7", {**CLICK, "axis": 7}, 422, "'axis'", model="medicosam_3d"),
    infer("3d iou_threshold 2", {**CLICK, "iou_threshold": 2}, 422, "'iou_threshold'", model="medicosam_3d"),
    infer("3d box_extension true", {**CLICK, "box_extension": True}, 422, "'box_extension'", model="medicosam_3d"),
    infer("3d min_predicted_iou a word", {**CLICK, "min_predicted_iou": "high"}, 422, "must be a number",
          model="medicosam_3d"),
    infer("3d projection zigzag", {**CLICK, "projection": "zigzag"}, 422, "projection", model="medicosam_3d"),
    infer("3d reset_state nah", {**CLICK, "reset_state": "nah"}, 422, "'reset_state'", model="medicosam_3d"),
    infer("3d no prompt", {"label": "x"}, 422, "No prompt", model="medicosam_3d"),
    infer("3d params a list", "[1]", 422, "must be a JSON object", model="medicosam_3d"),
    infer("3d unknown image", CLICK, 404, "not in the datastore", model="medicosam_3d", image="nope"),
    # -- semantic -------------------------------------------------------------------------------------
    infer("semantic unknown image", {}, 404, "not in the datastore", model="medicosam_semantic", image="nope"),
    infer("semantic params a list", "[]", 422, "must be a JSON object", model="medicosam_semantic"),
    infer("semantic result_compress maybe", {"result_compress": "maybe"}, 422, "'result_compress'",
          model="medicosam_semantic"),
    infer("semantic empty image", {}, 422, "image=<id>", model="medicosam_semantic", image=""),
    # -- label save -----------------------------------------------------------------------------------
    save_label("label params broken json", 400, "not valid JSON", params='{"label_info": ['),
    save_label("label params a list", 422, "must be a JSON object", params="[]"),
    save_label("label_info not a list", 422, "'label_info' must be a list", params={"label_info": "fuzz"}),
    save_label("label_info entry a number", 422, "'label_info[0]'", params={"label_info": [1]}),
    save_label("label_info idx a word", 422, "'label_info[0].idx'",
               params={"label_info": [{"name": "a", "idx": "one"}]}),
    save_label("label empty upload", 422, "is empty", label=("label.nii.gz", b"")),
    save_label("label not an image", 422, "cannot be read", label=("label.nii.gz", text_pretending_to_be_nifti)),
    save_label("label of the wrong size", 422, "size", label=("label.nii.gz", label_of_wrong_size)),
    save_label("label for an unknown image", 404, "not in the datastore", image="no-such-image"),
    save_label("label for an empty image id", 422, "'image'", image=""),
    save_label("label for image ../oblique", 404, "not in the datastore", image="../oblique"),
    save_label("label without a file", 422, "", label=None),
    save_label("label tag with ../", 422, "plain name", tag=ESCAPING_TAG),
    # -- image upload and download ----------------------------------------------------------------------
    Case("image upload empty", "PUT", "/datastore/image", 422, "is empty", query={"image": "new"},
         files={"file": ("new.nii.gz", b"")}),
    Case("image upload params broken", "PUT", "/datastore/image", 400, "not valid JSON", query={"image": "new"},
         params="{", files={"file": ("new.nii.gz", label_of_right_size)}),
    Case("image upload id with ../", "PUT", "/datastore/image", 422, "plain name", query={"image": ESCAPING_IMAGE_ID},
         files={"file": ("x.nii.gz", label_of_right_size)}),
    Case("image info broken json", "PUT", "/datastore/image/info", 400, "not valid JSON", query={"image": "oblique"},
         form={"info": "{{"}),
    Case("download empty image id", "GET", "/datastore/image", 404, "", query={"image": ""}),
    Case("download unknown image", "GET", "/datastore/image", 404, "", query={"image": "no-such-image"}),
    Case("download image ../oblique", "GET", "/datastore/image", 404, "", query={"image": "../oblique"}),
    Case("download /etc/passwd", "GET", "/datastore/image", 404, "", query={"image": "/etc/passwd"}),
    Case("download without image", "GET", "/datastore/image", 422, ""),
    # -- active learning ------------------------------------------------------------------------------
    Case("unknown strategy", "POST", "/activelearning/nope", 404, "no strategy 'nope'"),
    Case("params names an unknown strategy", "POST", "/activelearning/random", 404, "no strategy",
         body={"strategy": "x"}),
    Case("strategy body a list", "POST", "/activelearning/random", 422, "", body=[1, 2]),
    Case("strategy body broken json", "POST", "/activelearning/random", 422, "", body='{"a": '),
    Case("strategy label_tag an object", "POST", "/activelearning/medicosam_uncertainty", 422, "'label_tag'",
         body={"label_tag": {}}),
    # -- scoring ----------------------------------------------------------------------------------------
    Case("unknown scoring method", "POST", "/scoring/nope", 404, "no scoring method 'nope'"),
    Case("params names an unknown method", "POST", "/scoring/medicosam_dice", 404, "no scoring method",
         body={"method": "nope"}),
    Case("scoring run_sync maybe", "POST", "/scoring/medicosam_dice", 422, "", query={"run_sync": "maybe"}),
    Case("scoring body a number", "POST", "/scoring/medicosam_dice", 422, "", body="3"),
    Case("score all with a list for a method", "POST", "/scoring/", 422, "medicosam_dice",
         body={"medicosam_dice": [1]}),
    # -- training -------------------------------------------------------------------------------------
    Case("unknown trainer", "POST", "/train/nope", 404, "no trainer 'nope'"),
    Case("train epochs many", "POST", "/train/medicosam_semantic", 422, "epochs", body={"epochs": "many"}),
    Case("train warm_start maybe", "POST", "/train/medicosam_semantic", 422, "'warm_start'",
         body={"warm_start": "maybe"}),
    Case("train axis 5", "POST", "/train/medicosam_semantic", 422, "axis", body={"axis": 5}),
    Case("train nproc x", "POST", "/train/medicosam_semantic", 422, "'nproc'", body={"nproc": "x"}),
    Case("train nproc 0", "POST", "/train/medicosam_semantic", 422, "'nproc'", body={"nproc": 0}),
    Case("train force an object", "POST", "/train/medicosam_semantic", 422, "'force'", body={"force": {}}),
    Case("train min_new_labels -1", "POST", "/train/medicosam_semantic", 422, "'min_new_labels'",
         body={"min_new_labels": -1}),
    Case("train negative learning rate", "POST", "/train/medicosam_semantic", 422, "out of range",
         body={"learning_rate": -1}),
    Case("train enqueue maybe", "POST", "/train/medicosam_semantic", 422, "", query={"enqueue": "maybe"}),
    Case("train all with a list for a model", "POST", "/train/", 422, "medicosam_semantic",
         body={"medicosam_semantic": [1]}),
    Case("finetune sub_iterations 0", "POST", "/train/medicosam_interactive", 422, "sub_iterations",
         body={"sub_iterations": 0}),
    Case("finetune box_jitter 2", "POST", "/train/medicosam_interactive", 422, "box_jitter", body={"box_jitter": 2}),
    Case("finetune in two processes", "POST", "/train/medicosam_interactive", 422, "'nproc'", body={"nproc": 2}),
    Case("finetune warm_start maybe", "POST", "/train/medicosam_interactive", 422, "'warm_start'",
         body={"warm_start": "maybe"}),
    # -- sessions -------------------------------------------------------------------------------------
    Case("session empty file", "PUT", "/session/", 422, "is empty", files={"files": ("ct.nii.gz", b"")}),
    Case("session without files", "PUT", "/session/", 422, ""),
    Case("session uncompress a non-archive", "PUT", "/session/", 422, "needs an archive", query={"uncompress": "true"},
         files={"files": ("ct.nii.gz", label_of_right_size)}),
    Case("session uncompress a corrupt zip", "PUT", "/session/", 422, "cannot be read", query={"uncompress": "true"},
         files={"files": ("ct.zip", b"PK\x03\x04 broken")}),
    Case("session tar escaping its folder", "PUT", "/session/", 422, "outside its folder", query={"uncompress": "true"},
         files={"files": ("ct.tar.gz", tar_escaping_its_folder)}),
    Case("session expiry a word", "PUT", "/session/", 422, "", query={"expiry": "soon"},
         files={"files": ("ct.nii.gz", label_of_right_size)}),
    Case("get unknown session", "GET", "/session/4f1e8a7c-0000-11ee-8000-000000000000", 404, "not found"),
    Case("get session ..", "GET", "/session/%2e%2e", 404, "not found"),
    Case("delete session ..", "DELETE", "/session/%2e%2e", 404, "not found"),
    Case("get session image flag maybe", "GET", "/session/abc", 422, "", query={"image": "maybe"}),
]


# -- the server -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "studies"
    folder.mkdir()
    write_volume(folder / "oblique.nii.gz", asymmetric_array(SHAPE))
    return folder


@pytest.fixture(scope="module")
def server(studies, tiny_checkpoint):
    root = studies.parent
    env = {
        "MEDICOSAM_CHECKPOINT": str(tiny_checkpoint),
        "MEDICOSAM_PREFETCH_RADIUS": "0",  # nothing in the background: each answer is the click's own work
        "MEDICOSAM_RETRAIN_AFTER_LABELS": "0",
        "MONAI_LABEL_SESSION_PATH": str(root / "sessions"),
    }
    with running_server(studies, root / "server.log", env=env) as url:
        assert wait_for_model(url)["available"], (root / "server.log").read_text()[-2000:]
        yield url


def click_mask(url: str, params: Dict[str, Any], **query: Any) -> np.ndarray:
    response = requests.post(
        f"{url}/infer/medicosam_interactive",
        params={"image": "oblique", "output": "image", **query},
        files={"params": (None, json.dumps({**params, **SLICER_INFER_PARAMS}))},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "label.nrrd"
        path.write_bytes(response.content)
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).transpose(2, 1, 0)


@pytest.fixture(scope="module")
def reference_mask(server) -> np.ndarray:
    """The valid click's mask before any bad request reached the server."""
    mask = click_mask(server, {**CLICK, "reset_state": True})
    assert mask.shape == SHAPE
    return mask


def test_a_valid_click_answers_before_the_fuzzing(reference_mask):
    assert set(np.argwhere(reference_mask)[:, 2]) <= {5}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_bad_request_gets_a_4xx_with_a_message(server, reference_mask, case):
    response = case.send(server)
    expected = case.status if isinstance(case.status, tuple) else (case.status,)
    assert response.status_code in expected, f"{case.name}: {response.status_code} {response.text[:500]}"
    detail = response.json().get("detail")
    assert detail, f"{case.name}: no detail in {response.text[:500]}"
    assert case.message.lower() in (detail if isinstance(detail, str) else json.dumps(detail)).lower(), detail


def test_the_table_is_a_fuzz_suite_of_at_least_40_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


def test_reset_state_false_refines_and_true_starts_over(server):
    """``"reset_state": "false"`` is false (it used to reset: a non-empty string is truthy)."""

    def answer(reset_state: Any) -> Tuple[float, np.ndarray]:
        params = {**CLICK, "client_id": "reset-check", "reset_state": reset_state}
        response = requests.post(
            f"{server}/infer/medicosam_interactive", params={"image": "oblique", "output": "json"},
            files={"params": (None, json.dumps(params))}, timeout=60,
        )
        assert response.status_code == 200, response.text
        return response.json()["predicted_iou"]

    fresh = answer(True)
    refined = answer("false")  # the previous logits go in as the mask prompt
    assert refined != fresh
    assert answer("true") == fresh  # reset: the same as the first click
    assert answer("FALSE") == refined  # and from that same state, the same refinement


def test_save_label_false_as_text_saves_nothing(server):
    """MONAI Label saves an inference result as a label when ``save_label`` is truthy; "false" is not."""
    response = requests.post(
        f"{server}/infer/medicosam_interactive", params={"image": "oblique", "output": "json"},
        files={"params": (None, json.dumps({**CLICK, "save_label": "false", "label_tag": "original"}))}, timeout=60,
    )
    assert response.status_code == 200, response.text
    labels = requests.get(f"{server}/datastore/", params={"output": "all"}, timeout=10).json()["objects"]["oblique"]
    assert "original" not in labels["labels"]


def test_a_session_upload_is_still_served(server, studies):
    """The session route is guarded, not closed: Slicer's upload of a local image still works."""
    upload = {"files": ("oblique.nii.gz", (studies / "oblique.nii.gz").read_bytes())}
    created = requests.put(f"{server}/session/", files=upload, timeout=30)
    assert created.status_code == 200, created.text
    session_id = created.json()["session_id"]
    response = requests.post(
        f"{server}/infer/medicosam_interactive", params={"session_id": session_id, "output": "json"},
        files={"params": (None, json.dumps({**CLICK, "client_id": "session"}))}, timeout=60,
    )
    assert response.status_code == 200, response.text
    assert requests.get(f"{server}/session/{session_id}", timeout=10).status_code == 200


def test_after_the_fuzzing_the_same_click_gives_the_same_mask(server, reference_mask, studies):
    assert requests.get(f"{server}/info/", timeout=10).ok
    assert np.array_equal(click_mask(server, {**CLICK, "reset_state": True}), reference_mask)
    datastore = requests.get(f"{server}/datastore/", params={"output": "all"}, timeout=10).json()
    assert set(datastore["objects"]) == {"oblique"}  # no upload got in
    assert not datastore["objects"]["oblique"]["labels"]  # and no label was saved
    assert not (Path(tempfile.gettempdir()) / TAR_ESCAPE).exists()
