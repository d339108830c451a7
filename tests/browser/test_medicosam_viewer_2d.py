"""Our viewer on what is not a CT: a MONOCHROME1 radiograph with ImagerPixelSpacing and a colour ultrasound clip,
in a real Orthanc. A box on the radiograph and a box on frame 3 of the clip land on the pixels cornerstone
computes and draw what the server computes, pixel for pixel; the panel offers frame tracking on the clip and no
propagation on the radiograph; tracking draws the server's answer on every frame. And with sign-in on, a viewer
whose sign-in has ended says so instead of failing silently.
"""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest

from conftest import requested
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.provider import ModelProvider
from projection_files import STUDY, asymmetric_picture, write_dicom
from server.harness import REPO, running_server, wait_for_model
from server.orthanc import running_orthanc, upload

from .viewer_page import (
    activate, answer_label, check_box, drag_box, drawn_box, labelmap, open_study, press, wait_for_answer, wait_for_error,
)

ARTIFACTS = REPO / "test-artifacts"
ENV = {"MEDICOSAM_PREFETCH_RADIUS": "0", "MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, phantom_checkpoint):
    root = tmp_path_factory.mktemp("medicosam_viewer_2d")
    files = root / "upload"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        radiograph = write_dicom(files / "cr.dcm", 4095 - asymmetric_picture(40, 56), "CR", "MONOCHROME1",
                                 ImagerPixelSpacing=[0.2, 0.1], SeriesDescription="Chest PA", SeriesNumber=1)
        clip = write_dicom(files / "us.dcm", asymmetric_picture(30, 40, frames=5, colour=True), "US", frames=True,
                           FrameTime=40.0, SeriesDescription="Echo clip", SeriesNumber=2)
    with running_orthanc(root / "orthanc") as pacs:
        upload(pacs, files)
        env = {**ENV, "MEDICOSAM_CHECKPOINT": str(phantom_checkpoint)}
        with running_server(pacs, root / "server.log", env=env) as server:
            assert wait_for_model(server)["available"]
            yield {"server": server, "pacs": pacs, "files": {"CR": radiograph, "US": clip},
                   "series": {m: str(pydicom.dcmread(str(f), stop_before_pixels=True).SeriesInstanceUID)
                              for m, f in (("CR", radiograph), ("US", clip))}}


def _viewport_of(page, modality: str):
    """The viewport showing the series of ``modality``."""
    viewport_id = page.evaluate("""(modality) => {
        const { viewportGridService, displaySetService } = window.services;
        for (const [id, viewport] of viewportGridService.getState().viewports) {
            const shown = viewport.displaySetInstanceUIDs.map(uid => displaySetService.getDisplaySetByUID(uid));
            if (shown.some(d => d && d.Modality === modality)) return id;
        }
        return null;
    }""", modality)
    assert viewport_id, f"no viewport shows the {modality} series"
    return page.locator(f"[data-viewport-uid='{viewport_id}']")


def _served(stack, phantom_checkpoint, modality, params) -> np.ndarray:
    """The core's mask for the viewer's request on the DICOM file itself, as [k, j, i]."""
    segmenter = InteractiveSegmenter(ModelProvider(str(phantom_checkpoint)))
    context = ClickContext("reference", client_id=params["client_id"], label=params["label"])
    return segmenter.segment(stack["files"][modality], requested(params), context, axis=2).label.transpose(2, 1, 0)


def test_a_box_on_a_radiograph_draws_the_servers_mask_and_offers_no_propagation(stack, page, phantom_checkpoint):
    open_study(page, stack["server"], STUDY)
    frame = activate(page, _viewport_of(page, "CR"))
    page.locator("#medicosam-panel").hover()  # the panel follows the active series
    assert page.locator("#medicosam-panel button[data-action='propagate']").is_disabled()
    press(page, "box")
    drag_box(page, frame, 0.35, 0.40, 90, 60)
    said = wait_for_answer(page, 1)
    assert "mask on image 1" in said, said
    params = page.evaluate("() => window.medicosam.lastAnswer.params")
    assert params["axis"] == 2 and params["slice"] == 0 and params["roi"][4:] == [0, 0]
    check_box(params, drawn_box(page))
    served = _served(stack, phantom_checkpoint, "CR", params)
    found, sizes = labelmap(page, stack["series"]["CR"])
    assert sizes == [56, 40, 1] and served.any()
    assert np.array_equal(found, np.flatnonzero(served.ravel()))
    page.screenshot(path=str(ARTIFACTS / "viewer_radiograph_box.png"))


def test_a_box_on_a_clip_frame_then_tracking_through_the_frames(stack, page, phantom_checkpoint, tmp_path):
    open_study(page, stack["server"], STUDY)
    view = _viewport_of(page, "US")
    frame = activate(page, view)
    page.evaluate("""(uid) => {  // scroll the clip to its third frame, as the mouse wheel does
        const { cornerstoneViewportService } = window.services;
        const viewport = cornerstoneViewportService.getCornerstoneViewport(uid);
        viewport.setImageIdIndex(2);
    }""", view.get_attribute("data-viewport-uid"))
    page.wait_for_timeout(500)
    page.locator("#medicosam-panel").hover()
    track = page.locator("#medicosam-panel button[data-action='propagate']")
    assert not track.is_disabled() and track.inner_text() == "Track frames"
    press(page, "box")
    drag_box(page, frame, 0.45, 0.30, 80, 60)
    said = wait_for_answer(page, 1)
    params = page.evaluate("() => window.medicosam.lastAnswer.params")
    drawn = drawn_box(page)
    frame_index = page.evaluate("(id) => window.medicosam.grid(window.services.displaySetService.getActiveDisplaySets()"
                                ".find(d => d.Modality === 'US')).sliceOf.get(id)", drawn["imageId"])
    assert drawn["imageId"].endswith("/frames/3") and frame_index == 2
    assert params["slice"] == 2 and "mask on frame 3" in said, said
    check_box(params, drawn)
    served = _served(stack, phantom_checkpoint, "US", params)
    found, sizes = labelmap(page, stack["series"]["US"])
    assert sizes == [40, 30, 5]
    assert np.array_equal(found, np.flatnonzero(served.ravel()))

    page.evaluate("() => { window.medicosam.propagationOptions = { iou_threshold: 0, min_predicted_iou: 0 }; }")
    with page.expect_response(lambda r: "/infer/medicosam_3d" in r.url, timeout=120_000) as answered:
        press(page, "propagate")
    said = wait_for_answer(page, 2)
    assert "propagated over frames 1–5" in said, said
    tracked = answer_label(answered.value, tmp_path)
    assert tracked.shape == (5, 30, 40) and len({k for k in np.argwhere(tracked)[:, 0]}) > 1
    found, _ = labelmap(page, stack["series"]["US"])
    assert np.array_equal(found, np.flatnonzero(tracked.ravel()))
    page.screenshot(path=str(ARTIFACTS / "viewer_clip_tracking.png"))


@pytest.fixture(scope="module")
def signed_in(tmp_path_factory, phantom_checkpoint):
    from medicosam_app.security.users import UserStore

    root = tmp_path_factory.mktemp("viewer_signed_in")
    files = root / "upload"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_dicom(files / "cr.dcm", 4095 - asymmetric_picture(40, 56), "CR", "MONOCHROME1",
                    ImagerPixelSpacing=[0.2, 0.1], SeriesDescription="Chest PA")
    users = root / "users.json"
    UserStore(users, rounds=4).add("rad", "rad-pass-1", "annotator")
    env = {**ENV, "MEDICOSAM_CHECKPOINT": str(phantom_checkpoint), "MEDICOSAM_USERS_FILE": str(users),
           "MEDICOSAM_AUDIT_DIR": str(root / "audit")}
    with running_orthanc(root / "orthanc") as pacs:
        upload(pacs, files)
        with running_server(pacs, root / "server.log", env=env, ready_path="/auth/") as server:
            yield server


def test_signed_out_viewer_says_to_sign_in_again(signed_in, page):
    page.goto(f"{signed_in}/ohif/segmentation?StudyInstanceUIDs={STUDY}")
    page.wait_for_url(lambda url: "/auth/signin" in url, timeout=30_000)
    page.fill("input[name=username]", "rad")
    page.fill("input[name=password]", "rad-pass-1")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/ohif/segmentation" in url, timeout=30_000)
    open_study(page, signed_in, STUDY)  # the cookie carries the viewer's images and /info
    frame = activate(page, _viewport_of(page, "CR"))
    page.context.clear_cookies()  # the sign-in ends (expired, signed out in another tab)
    press(page, "box")
    drag_box(page, frame, 0.35, 0.40, 90, 60)
    said = wait_for_error(page)
    assert "401" in said and "sign in again" in said, said
    page.screenshot(path=str(ARTIFACTS / "viewer_signed_out.png"))
