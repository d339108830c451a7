"""Request limits through the real server: what a request may save, store, log, run and unpack.

- an inference with ``save_label`` never replaces the ``final`` label, and a draft it saves names who clicked;
- the next-sample body (``POST /activelearning/<strategy>``) is bounded and typed before MONAI Label stores
  its ``client_id`` in the datastore index; with sign-in on, the signed-in user is recorded;
- huge requests reach the logs shortened (MONAI Label logs requests verbatim);
- batch inference: unknown models 404, prompt-driven models 422, and on a machine without a GPU it runs on
  the CPU (it divided by zero), from the thread pool;
- sessions from an archive or from several files hold one image that can be downloaded and segmented; an
  archive's unpacked size, file names and the expiry are bounded;
- image info of an unknown image and the deletion of a missing label are 404s.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import requests
import SimpleITK as sitk

import build_dicom
from conftest import asymmetric_array, write_volume
from medicosam_app.security.users import UserStore

from .harness import REPO, running_server, wait_for_model

pytestmark = pytest.mark.server

SHAPE = (40, 30, 12)
CLICK = {"foreground": [[30, 7, 5]], "background": [], "slice": 5, "label": "organ"}
SESSION_MAX_MB = 20


# -- the server ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("limits")
    studies = root / "studies"
    studies.mkdir()
    write_volume(studies / "oblique.nii.gz", asymmetric_array(SHAPE))
    write_volume(studies / "second.nii.gz", asymmetric_array(SHAPE, seed=7))
    env = {
        "MEDICOSAM_CHECKPOINT": str(tiny_checkpoint),
        "MEDICOSAM_PREFETCH_RADIUS": "0",
        "MEDICOSAM_RETRAIN_AFTER_LABELS": "0",
        "MEDICOSAM_SESSION_MAX_MB": str(SESSION_MAX_MB),
        "MONAI_LABEL_SESSION_PATH": str(root / "sessions"),
    }
    with running_server(studies, root / "server.log", env=env) as url:
        assert wait_for_model(url)["available"], (root / "server.log").read_text()[-2000:]
        yield {"url": url, "root": root, "studies": studies, "log": root / "server.log", "sessions": root / "sessions"}


def infer(site, params: Dict[str, Any], model: str = "medicosam_interactive", **query: Any) -> requests.Response:
    query = {"image": "oblique", "output": "json", **query}
    return requests.post(f"{site['url']}/infer/{model}", params=query,
                         files={"params": (None, json.dumps(params))}, timeout=120)


def detail(response: requests.Response) -> str:
    value = response.json().get("detail")
    return value if isinstance(value, str) else json.dumps(value)


def volume_bytes(array: np.ndarray, tmp_path: Path, name: str = "v.nii.gz") -> bytes:
    return write_volume(tmp_path / name, array).read_bytes()


def label_info(site, image: str, tag: str) -> Dict[str, Any]:
    listing = requests.get(f"{site['url']}/datastore/", params={"output": "all"}, timeout=10).json()["objects"]
    return listing[image]["labels"].get(tag, {}).get("info")


# -- 1. save_label on inference -------------------------------------------------------------------------


def test_a_click_never_replaces_the_final_label(site, tmp_path):
    final = (asymmetric_array(SHAPE) > 60).astype(np.uint8)
    assert len(set(np.argwhere(final)[:, 2])) > 1  # a label of many slices
    saved = requests.put(
        f"{site['url']}/datastore/label", params={"image": "oblique", "tag": "final"},
        data={"params": json.dumps({"label_info": [{"name": "organ", "idx": 1}], "client_id": "annotator-alice"})},
        files={"label": ("label.nii.gz", volume_bytes(final, tmp_path))}, timeout=30,
    )
    assert saved.status_code == 200, saved.text
    path = site["studies"] / "labels" / "final" / "oblique.nii.gz"
    before = path.read_bytes()

    response = infer(site, {**CLICK, "client_id": "bob", "save_label": True, "label_tag": "final"})
    assert response.status_code == 422, response.text
    assert "drafts" in detail(response) and "PUT /datastore/label" in detail(response)
    response = infer(site, {**CLICK, "client_id": "bob", "save_label": "true"})  # label_tag: MONAI's default
    assert response.status_code == 200, response.text
    assert path.read_bytes() == before
    assert label_info(site, "oblique", "final")["annotator"] == "annotator-alice"


def test_a_draft_saved_by_a_click_names_who_clicked(site):
    response = infer(site, {**CLICK, "client_id": "bob", "save_label": True, "label_tag": "bob_draft"})
    assert response.status_code == 200, response.text
    info = label_info(site, "oblique", "bob_draft")
    assert info["annotator"] == "bob" and info["model"] == "medicosam_interactive"
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(site["studies"] / "labels" / "bob_draft" / "oblique.nii.gz")))
    assert label.shape == SHAPE[::-1]


def test_a_save_label_tag_that_is_no_plain_name_is_refused_before_the_click_runs(site):
    response = infer(site, {**CLICK, "save_label": True, "label_tag": "../../escaped"})
    assert response.status_code == 422 and "plain name" in detail(response)


# -- 2. next sample -------------------------------------------------------------------------------------


STRATEGY_BODIES = [
    ("client_id of 20 MB", {"client_id": "z" * 20_000_000}, 413, "this route accepts at most"),  # before reading it
    ("body of 100 kB", {"client_id": "c", "labels": ["z" * 1000] * 100}, 413, "bytes of JSON"),
    ("client_id of 5000 characters", {"client_id": "z" * 5000}, 422, "'client_id' is 5000 characters"),
    ("client_id a list", {"client_id": [1]}, 422, "'client_id' must be a string"),
    ("client_id an object", {"client_id": {"x": [[[[1]]]]}}, 422, "'client_id'"),
    ("deeply nested option", {"x": [[[[1]]]]}, 422, "nested"),
    ("label_tag of 5000 characters", {"label_tag": "t" * 5000}, 422, "'label_tag'"),
    ("label_tag with ../", {"label_tag": "../../x"}, 422, "plain name"),
    ("labels a string", {"labels": "organ"}, 422, "'labels'"),
]


@pytest.mark.parametrize("body, status, message", [pytest.param(*c[1:], id=c[0]) for c in STRATEGY_BODIES])
def test_next_sample_bodies_are_bounded(site, body, status, message):
    response = requests.post(f"{site['url']}/activelearning/random", json=body, timeout=60)
    assert response.status_code == status, response.text[:500]
    assert message in detail(response)


def test_next_sample_stores_a_plain_client_id_and_the_index_stays_small(site):
    response = requests.post(f"{site['url']}/activelearning/random", json={"client_id": "carol"}, timeout=30)
    assert response.status_code == 200, response.text
    image = response.json()["id"]
    info = requests.get(f"{site['url']}/datastore/image/info", params={"image": image}, timeout=10).json()
    assert info["strategy"]["random"]["client_id"] == "carol"
    index = site["studies"] / "datastore_v2.json"
    assert index.stat().st_size < 50_000
    for entry in json.loads(index.read_text())["objects"].values():
        for record in entry["image"]["info"].get("strategy", {}).values():
            assert record.get("client_id") is None or (isinstance(record["client_id"], str) and len(record["client_id"]) <= 1024)


# -- 3. logs --------------------------------------------------------------------------------------------


def test_a_huge_request_reaches_the_logs_shortened(site):
    marker = f"logmarker{uuid.uuid4().hex}"
    response = infer(site, {"note": marker + "q" * 300_000, **CLICK, "client_id": "logger"})
    assert response.status_code == 200, response.text
    time.sleep(0.5)
    app_logs = REPO / "apps" / "medicosam" / "logs"
    for name, files in (("console", [site["log"]]), ("app.log", sorted(app_logs.glob("app.log*")))):
        lines = [line for f in files for line in f.read_text(errors="replace").splitlines() if marker in line]
        assert lines, f"the request is logged to the {name}"
        assert max(len(line) for line in lines) < 4096 + 500, f"{name}: a line of {max(map(len, lines))} characters"
        assert any("more characters not logged" in line for line in lines), name


# -- 4. batch inference ---------------------------------------------------------------------------------


def test_batch_inference_of_an_unknown_model_is_a_404_naming_the_models(site):
    response = requests.post(f"{site['url']}/batch/infer/nope", timeout=30)
    assert response.status_code == 404, response.text
    assert "no model 'nope'" in detail(response) and "medicosam_semantic" in detail(response)


@pytest.mark.parametrize("model", ["medicosam_interactive", "medicosam_3d"])
def test_batch_inference_of_a_prompted_model_says_which_models_it_runs(site, model):
    response = requests.post(f"{site['url']}/batch/infer/{model}", json={"device": "cpu"}, timeout=30)
    assert response.status_code == 422, response.text
    assert "batch inference runs medicosam_instances, medicosam_semantic" in detail(response)


def test_batch_inference_never_saves_final_labels(site):
    response = requests.post(f"{site['url']}/batch/infer/medicosam_instances", json={"label_tag": "final"}, timeout=30)
    assert response.status_code == 422 and "drafts" in detail(response)


BATCH_EVERYTHING = {"mode": "everything", "points_per_side": 4, "pred_iou_thresh": 0, "stability_score_thresh": 0,
                    "min_area": 1}


def test_batch_inference_runs_on_the_cpu_in_the_thread_pool(site):
    response = requests.post(
        f"{site['url']}/batch/infer/medicosam_instances", params={"run_sync": True},
        json={"device": "cpu", "label_tag": "batch_auto", **BATCH_EVERYTHING}, timeout=300,
    )
    assert response.status_code == 200, response.text[:2000]
    assert set(response.json()) == {"oblique", "second"}
    for image in ("oblique", "second"):
        assert (site["studies"] / "labels" / "batch_auto" / f"{image}.nii.gz").exists()
    lines = [line for line in site["log"].read_text().splitlines() if "Total number of images for batch inference" in line]
    assert lines and "[MainThread]" not in lines[-1], lines[-1:]


def test_background_batch_inference_without_a_gpu_finishes(site):
    """Without run_sync MONAI Label runs the batch in a process of its own, which divided by zero as well."""
    response = requests.post(
        f"{site['url']}/batch/infer/medicosam_instances", params={"images": "all"},
        json={"label_tag": "batch_background", **BATCH_EVERYTHING}, timeout=30,
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 300
    while True:
        status = requests.get(f"{site['url']}/batch/infer", timeout=10).json()
        if status["status"] not in ("SUBMITTED", "RUNNING") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status["status"] == "DONE", json.dumps(status)[-3000:]
    assert (site["studies"] / "labels" / "batch_background" / "second.nii.gz").exists()


# -- 5. sessions ----------------------------------------------------------------------------------------


def zipped(files: Dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def session_folders(site) -> set:
    folder = site["sessions"]
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.exists() else set()


def dicom_series(tmp_path: Path) -> Dict[str, bytes]:
    image = sitk.GetImageFromArray((asymmetric_array(SHAPE) * 10).astype(np.int16).transpose(2, 1, 0))
    image.SetSpacing((0.7, 0.9, 2.0))
    folder = tmp_path / "series"
    build_dicom.write_series(image, folder, "CT", "session", build_dicom.uid("session-study"), 1)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def check_session_serves_its_image(site, response, tmp_path: Path, content: bytes = b"") -> None:
    assert response.status_code == 200, response.text
    session_id = response.json()["session_id"]
    download = requests.get(f"{site['url']}/session/{session_id}", params={"image": "true"}, timeout=30)
    assert download.status_code == 200, download.text[:1000]
    if content:
        assert download.content == content
    downloaded = tmp_path / "downloaded.nii.gz"
    downloaded.write_bytes(download.content)
    assert sitk.ReadImage(str(downloaded)).GetSize() == SHAPE
    click = infer(site, {**CLICK, "client_id": "session"}, image=None, session_id=session_id)
    assert click.status_code == 200, click.text


def test_a_session_from_an_archive_with_one_image(site, tmp_path):
    ct = volume_bytes(asymmetric_array(SHAPE), tmp_path, "ct.nii.gz")
    upload = zipped({"case/ct.nii.gz": ct, "__MACOSX/case/._ct.nii.gz": b"fork", "case/.DS_Store": b"x"})
    response = requests.put(f"{site['url']}/session/", params={"uncompress": "true"},
                            files={"files": ("ct.zip", upload)}, timeout=60)
    assert response.json()["session_info"]["image"].endswith("ct.nii.gz"), response.text
    check_session_serves_its_image(site, response, tmp_path, content=ct)


def test_a_session_from_an_archived_dicom_series(site, tmp_path):
    series = dicom_series(tmp_path)
    response = requests.put(f"{site['url']}/session/", params={"uncompress": "true"},
                            files={"files": ("series.zip", zipped({f"ct/{n}": d for n, d in series.items()}))}, timeout=60)
    check_session_serves_its_image(site, response, tmp_path)


def test_a_session_from_the_files_of_a_dicom_series(site, tmp_path):
    files = [("files", (name, data)) for name, data in dicom_series(tmp_path).items()]
    check_session_serves_its_image(site, requests.put(f"{site['url']}/session/", files=files, timeout=60), tmp_path)


def test_a_session_stored_as_a_folder_before_is_resolved_when_used(site, tmp_path):
    """A session MONAI Label stored as a folder (made before this check existed) still serves its image."""
    session_id = str(uuid.uuid1())
    folder = site["sessions"] / session_id
    (folder / "tmpupload" / "case").mkdir(parents=True)
    ct = volume_bytes(asymmetric_array(SHAPE), tmp_path, "ct.nii.gz")
    (folder / "tmpupload" / "case" / "ct.nii.gz").write_bytes(ct)
    now = int(time.time())
    (folder / "meta.info").write_text(json.dumps({
        "name": session_id, "path": str(folder), "image": str(folder / "tmpupload"), "meta": {},
        "create_ts": now, "last_access_ts": now, "expiry": 3600,
    }))
    response = requests.get(f"{site['url']}/session/{session_id}", params={"image": "true"}, timeout=30)
    assert response.status_code == 200 and response.content == ct, response.text[:500]
    assert json.loads((folder / "meta.info").read_text())["image"].endswith("case/ct.nii.gz")


def test_a_session_of_two_images_is_refused_and_not_kept(site, tmp_path):
    before = session_folders(site)
    files = [("files", ("a.nii.gz", volume_bytes(asymmetric_array(SHAPE), tmp_path, "a.nii.gz"))),
             ("files", ("b.nii.gz", volume_bytes(asymmetric_array(SHAPE, seed=4), tmp_path, "b.nii.gz")))]
    response = requests.put(f"{site['url']}/session/", files=files, timeout=60)
    assert response.status_code == 422, response.text
    assert "2 image files" in detail(response) and "one image" in detail(response)
    assert session_folders(site) == before


def test_an_archive_without_an_image_is_refused(site):
    before = session_folders(site)
    response = requests.put(f"{site['url']}/session/", params={"uncompress": "true"},
                            files={"files": ("notes.zip", zipped({"notes.txt": b"hello"}))}, timeout=60)
    assert response.status_code == 422 and "no image" in detail(response), response.text
    assert session_folders(site) == before


def test_an_archive_that_unpacks_beyond_the_limit_is_refused_before_unpacking(site):
    before = session_folders(site)
    bomb = zipped({"zeros.nii": bytes((SESSION_MAX_MB + 5) << 20)})
    assert len(bomb) < 200_000
    response = requests.put(f"{site['url']}/session/", params={"uncompress": "true"},
                            files={"files": ("ct.zip", bomb)}, timeout=60)
    assert response.status_code == 413, response.text
    assert "unpacks to" in detail(response) and f"{SESSION_MAX_MB:.1f} MiB" in detail(response)
    assert session_folders(site) == before


@pytest.mark.parametrize("query, files, message", [
    pytest.param({}, [("files", (".hidden.nii.gz", b"x" * 10))], "starts with '.'", id="hidden file name"),
    pytest.param({"expiry": -1}, [("files", ("ct.nii.gz", b"x" * 10))], "'expiry'", id="expiry -1"),
    pytest.param({"expiry": 10 ** 12}, [("files", ("ct.nii.gz", b"x" * 10))], "'expiry'", id="expiry 10**12"),
    pytest.param({"uncompress": "true"}, [("files", ("a.zip", b"PK")), ("files", ("b.zip", b"PK"))],
                 "one archive", id="two archives"),
    pytest.param({}, [("files", ("ct.txt", b"just text"))], "neither", id="a file that is no image"),
])
def test_bad_session_uploads_are_refused(site, query, files, message):
    before = session_folders(site)
    response = requests.put(f"{site['url']}/session/", params=query, files=files, timeout=60)
    assert response.status_code == 422, response.text
    assert message in detail(response)
    assert session_folders(site) == before


# -- 6. ids that do not exist ---------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["nope", "../../etc/passwd"])
def test_image_info_of_an_unknown_image_is_a_404(site, image):
    response = requests.get(f"{site['url']}/datastore/image/info", params={"image": image}, timeout=10)
    assert response.status_code == 404, response.text
    assert "not in the datastore" in detail(response)
    assert requests.get(f"{site['url']}/datastore/image/info", params={"image": "oblique"}, timeout=10).json()["name"]


@pytest.mark.parametrize("label_id, tag, message", [
    ("nope", "final", "not in the datastore"), ("second", "no_such_tag", "has no label 'no_such_tag'"),
])
def test_deleting_a_missing_label_is_a_404(site, label_id, tag, message):
    response = requests.delete(f"{site['url']}/datastore/label", params={"id": label_id, "tag": tag}, timeout=10)
    assert response.status_code == 404, response.text
    assert message in detail(response)


# -- with sign-in on ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_in_site(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("limits_auth")
    studies = root / "studies"
    studies.mkdir()
    write_volume(studies / "oblique.nii.gz", asymmetric_array(SHAPE))
    users_file = root / "users.json"
    UserStore(users_file, rounds=4).add("ann", "ann-pass-1", "annotator")
    env = {"MEDICOSAM_CHECKPOINT": str(tiny_checkpoint), "MEDICOSAM_USERS_FILE": str(users_file),
           "MEDICOSAM_RETRAIN_AFTER_LABELS": "0", "MEDICOSAM_PREFETCH_RADIUS": "0"}
    with running_server(studies, root / "server.log", env=env, ready_path="/auth/") as url:
        token = requests.post(f"{url}/auth/token", data={"username": "ann", "password": "ann-pass-1"}, timeout=30)
        assert token.status_code == 200, token.text
        yield {"url": url, "headers": {"Authorization": f"Bearer {token.json()['access_token']}"}}


def test_with_sign_in_the_next_sample_records_the_user_not_the_claimed_client_id(signed_in_site):
    url, headers = signed_in_site["url"], signed_in_site["headers"]
    response = requests.post(f"{url}/activelearning/random", json={"client_id": "mallory"}, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    info = requests.get(f"{url}/datastore/image/info", params={"image": "oblique"}, headers=headers, timeout=10).json()
    assert info["strategy"]["random"]["client_id"] == "ann"


# -- bodies bounded before they are read ------------------------------------------------------------------


def test_an_oversized_options_body_is_refused_before_it_is_read(site):
    body = json.dumps({"epochs": 1, "padding": "x" * (2 << 20)})
    started = time.perf_counter()
    answer = requests.post(f"{site['url']}/train/medicosam_semantic", data=body,
                           headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 413 and "at most 1048576 bytes" in detail(answer)
    assert time.perf_counter() - started < 30  # no training was queued or run for it

    def chunks():  # the same body without a Content-Length: counted as it arrives
        for n in range(0, len(body), 65536):
            yield body[n:n + 65536].encode()

    streamed = requests.post(f"{site['url']}/scoring/medicosam_dice", data=chunks(),
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert streamed.status_code == 413 and "this route accepts at most" in detail(streamed)
    assert requests.get(f"{site['url']}/info/", timeout=10).status_code == 200  # the server serves on


def test_label_info_is_bounded_in_entries_and_text(site, tmp_path):
    label = (asymmetric_array(SHAPE) > 60).astype(np.uint8)
    files = {"label": ("label.nii.gz", volume_bytes(label, tmp_path))}

    def save(info):
        return requests.put(f"{site['url']}/datastore/label", params={"image": "second", "tag": "limits"},
                            files={**files, "params": (None, json.dumps({"label_info": info}))}, timeout=60)

    many = save([{"name": f"class {n}", "idx": n} for n in range(2000)])
    assert many.status_code == 413 and "at most 1024" in detail(many)
    long_name = save([{"name": "x" * 5000, "idx": 1}])
    assert long_name.status_code == 422 and "at most 1024" in detail(long_name)
    assert save([{"name": "organ", "idx": 1}]).status_code == 200


def test_an_upload_streamed_past_the_session_limit_is_cut_off_with_413(site):
    def chunks():  # no Content-Length: counted as it arrives, cut off at session_max_mb (+ the form's share)
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.nii.gz\"\r\n\r\n"
        for _ in range(SESSION_MAX_MB + 4):
            yield b"\0" * (1 << 20)
        yield b"\r\n--b--\r\n"

    answer = requests.put(f"{site['url']}/datastore/image", params={"image": "too_big"}, data=chunks(),
                          headers={"Content-Type": "multipart/form-data; boundary=b"}, timeout=120)
    assert answer.status_code == 413 and "this route accepts at most" in detail(answer)
    assert not list(site["studies"].glob("too_big*"))
