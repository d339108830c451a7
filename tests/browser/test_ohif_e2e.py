"""End to end in headless Chromium: MONAI Label's bundled OHIF (``--conf viewer monailabel``) from our server, a study from Orthanc, a point prompt, the mask.

The browser is Debian's chromium (scripts/install_system.sh), driven by playwright without downloading a
browser. The test clicks as a radiologist would: connect the MONAI Label panel, open Point Prompts, pick the
label, click on the axial view, press Run. It then checks, inside the page, that OHIF's labelmap holds the
mask our server computed for that very request, voxel for voxel, and that OHIF's CT volume is our volume
voxel for voxel (so the click → voxel → mask chain has no flip or transpose). A screenshot is kept in
test-artifacts/.
"""

from __future__ import annotations

import json
import re
from email.parser import BytesParser
from email.policy import default as email_policy
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image, ImageChops

import build_dicom
from conftest import gdcm_series_image
from conftest import requested
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.provider import ModelProvider
from server.harness import REPO, running_server, wait_for_model
from server.orthanc import running_orthanc, upload

from .viewer_page import wait_for_console

ARTIFACTS = REPO / "test-artifacts"
MODEL = "medicosam_interactive"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, phantom_checkpoint):
    """Orthanc with the sample CT and MR study, and our server in front of it."""
    root = tmp_path_factory.mktemp("ohif_e2e")
    build = build_dicom
    dicom = build.build(root / "dicom")
    env = {"MEDICOSAM_CHECKPOINT": str(phantom_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
           "MEDICOSAM_RETRAIN_AFTER_LABELS": "0", "MEDICOSAM_VIEWER": "monailabel"}
    with running_orthanc(root / "orthanc") as pacs:
        upload(pacs, dicom)
        with running_server(pacs, root / "server.log", env=env) as server:
            assert wait_for_model(server)["available"]
            yield server, build.uid("study"), dicom, root


def _multipart_params(body: bytes, content_type: str) -> dict:
    message = BytesParser(policy=email_policy).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "params":
            return json.loads(part.get_content())
    raise AssertionError("no params part in the infer request")


def _point_prompt(page, server: str):
    """As a radiologist does it, on the open study: connect the MONAI Label panel, choose Point Prompts and
    the label, click on the axial view, press Run. Returns the captured infer request, the axial view's
    locator and its screenshot before the click."""
    banner = page.get_by_text("Confirm and Hide")
    banner.wait_for(timeout=60_000)
    banner.click()
    wait_for_console(page, "displaySetsToAllImages")
    series_list = page.locator("[data-cy='studyBrowser-panel']").inner_text() if page.locator(
        "[data-cy='studyBrowser-panel']").count() else page.inner_text("body")
    assert "Phantom CT" in series_list and "MNI152 T1" in series_list  # the CT and the MR series

    # Connect the MONAI Label panel to this server and find our models in it.
    page.fill("#monailabelServerURL", f"{server}/")
    page.locator("table.settingsTable button.actionButton").first.click()
    page.get_by_text("Point Prompts", exact=True).wait_for(timeout=30_000)
    options = [text.strip() for text in page.locator("select.selectBox option").all_inner_texts()]
    assert {"medicosam_interactive", "medicosam_3d", "medicosam_semantic"} <= set(options), options

    page.get_by_text("Point Prompts", exact=True).click()
    page.locator("tr.clickable-row", has_text=re.compile(r"^\s*label\s*$")).first.click()
    page.wait_for_timeout(1000)  # the panel activates its probe tool for the chosen label
    axial = page.locator("[data-viewport-uid='mpr-axial']")
    box = axial.bounding_box()
    before = axial.screenshot()
    page.mouse.click(box["x"] + 0.42 * box["width"], box["y"] + 0.50 * box["height"])
    page.wait_for_timeout(1000)

    with page.expect_request(lambda r: f"/infer/{MODEL}" in r.url) as captured:
        page.locator("button[title='Run PointPrompts']").click()
    wait_for_console(page, "updated the segmentation's scalar data")
    return captured.value, axial, before


def test_point_prompt_in_ohif_shows_the_server_mask(stack, page, phantom_checkpoint, tmp_path):
    server, study_uid, dicom, _ = stack
    page.goto(f"{server}/ohif/monai-label?StudyInstanceUIDs={study_uid}")
    request, axial, before = _point_prompt(page, server)
    page.wait_for_timeout(1000)  # let the overlay render
    after = axial.screenshot()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ohif_point_prompt.png"))

    assert f"image={next(iter(_series_uids(dicom / 'phantom_ct')))}" in request.url and "output=image" in request.url
    params = _multipart_params(request.post_data_buffer, request.headers["content-type"])
    assert "slice" not in params and len(params["foreground"]) == 1 and params["result_extension"] == ".nrrd"

    # What the server computed for that request is what a fresh segmenter computes for the clicked voxel
    # (OHIF sends no client_id, so the server answered from the prompt alone) ...
    reference = gdcm_series_image(dicom / "phantom_ct")
    sitk.WriteImage(reference, str(tmp_path / "reference.nii.gz"))
    served = InteractiveSegmenter(ModelProvider(str(phantom_checkpoint))).segment(
        tmp_path / "reference.nii.gz", requested(params), ClickContext("ohif")
    ).label.transpose(2, 1, 0)  # [k, j, i]
    assert served.any() and not served.all()
    # ... is what OHIF's labelmap holds (its voxels run i fastest, then j, then k, as NRRD's do).
    in_browser = np.array(page.evaluate("""() => {
        const volume = window.services.segmentationService.getLabelmapVolume('1');
        const data = volume.voxelManager.getCompleteScalarDataArray();
        const found = [];
        for (let n = 0; n < data.length; n++) if (data[n]) found.push(n);
        return found;
    }"""))
    assert np.array_equal(in_browser, np.flatnonzero(served.ravel()))
    # The clicked voxel is inside the slice the server segmented.
    assert set(np.argwhere(served)[:, 0]) == {params["foreground"][0][2]}

    # OHIF's CT volume is our volume voxel for voxel: the same index means the same place.
    ohif_ct = np.array(page.evaluate("""() => {
        const volume = window.cornerstone.cache.getVolumes().find(v => !v.volumeId.includes('seg') && v.imageData);
        return Array.from(volume.voxelManager.getCompleteScalarDataArray());
    }"""))
    ours = sitk.GetArrayFromImage(reference)
    assert np.array_equal(ohif_ct, ours.ravel())

    # And the mask is drawn: the axial view changed where the overlay went.
    difference = ImageChops.difference(Image.open(_png(before, tmp_path / "before.png")).convert("RGB"),
                                       Image.open(_png(after, tmp_path / "after.png")).convert("RGB"))
    changed = np.asarray(difference).sum(axis=2) > 30
    assert changed.mean() > 0.005, f"only {changed.mean():.4f} of the view changed"


def _png(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path


def _series_uids(folder: Path):
    import pydicom

    return {str(pydicom.dcmread(str(f), stop_before_pixels=True).SeriesInstanceUID) for f in folder.glob("*.dcm")}


@pytest.fixture(scope="module")
def signed_in_stack(tmp_path_factory, phantom_checkpoint):
    """The same PACS and server, with sign-in on (a users file with one annotator)."""
    from medicosam_app.security.users import UserStore

    root = tmp_path_factory.mktemp("ohif_signed_in")
    dicom = build_dicom.build(root / "dicom")
    users = root / "users.json"
    UserStore(users, rounds=4).add("rad", "rad-pass-1", "annotator")
    env = {"MEDICOSAM_CHECKPOINT": str(phantom_checkpoint), "MEDICOSAM_PREFETCH_RADIUS": "0",
           "MEDICOSAM_RETRAIN_AFTER_LABELS": "0", "MEDICOSAM_VIEWER": "monailabel", "MEDICOSAM_USERS_FILE": str(users),
           "MEDICOSAM_AUDIT_DIR": str(root / "audit")}
    with running_orthanc(root / "orthanc") as pacs:
        upload(pacs, dicom)
        with running_server(pacs, root / "server.log", env=env, ready_path="/auth/") as server:
            yield server, build_dicom.uid("study"), root


def test_ohif_with_sign_in_on_signs_in_and_runs_a_point_prompt(signed_in_stack, page):
    """OHIF's extension sends no token: the viewer's page leads to the sign-in page, whose HttpOnly cookie
    then carries every request the viewer makes (PACS proxy, /info, the prompt)."""
    server, study_uid, root = signed_in_stack
    page.goto(f"{server}/ohif/monai-label?StudyInstanceUIDs={study_uid}")
    page.wait_for_url(re.compile(r"/auth/signin\?next="), timeout=30_000)
    page.fill("input[name=username]", "rad")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    page.get_by_text("Wrong user name or password").wait_for(timeout=30_000)
    page.fill("input[name=username]", "rad")
    page.fill("input[name=password]", "rad-pass-1")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/ohif/monai-label\?StudyInstanceUIDs="), timeout=30_000)
    cookies = page.context.cookies()
    assert any(c["name"] == "medicosam_token" and c["httpOnly"] for c in cookies)
    assert page.evaluate("() => document.cookie").find("medicosam_token") == -1  # scripts cannot read it

    request, _, _ = _point_prompt(page, server)
    answer = request.response()
    assert answer is not None and answer.status == 200
    records = [json.loads(line) for line in (root / "audit" / "audit.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records if r["event"] == "sign_in"] == [401, 303]  # wrong, then in (redirect)
    clicks = [r for r in records if r["event"] == "infer"]
    assert clicks and clicks[-1]["user"] == "rad" and clicks[-1]["role"] == "annotator" and clicks[-1]["status"] == 200
    assert clicks[-1]["prompts"]["foreground"] and clicks[-1]["result"]["voxels"] > 0
