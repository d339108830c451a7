"""Our viewer end to end in headless Chromium: OHIF 3.13 at /ohif/ with the MedicoSAM extension, a study in a
real Orthanc, the real server with a tiny model. A radiologist's gestures with the mouse: a box dragged on the
axial stack, a point on the sagittal view of the MPR layout, undo. Each time the labelmap is read back from the
viewer and compared voxel for voxel with what a fresh segmenter computes for the request the viewer sent, and
the prompt's voxels are checked against cornerstone's own coordinate transforms and against the image the
viewer displays (the phantom is asymmetric, so a flip or transpose cannot pass). Screenshots and the measured
timings are kept in test-artifacts/.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import build_dicom
from conftest import gdcm_series_image
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.provider import ModelProvider
from server.harness import REPO, running_server, wait_for_model
from server.orthanc import running_orthanc, upload

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
ENV = {"MEDICOSAM_PREFETCH_RADIUS": "0", "MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, phantom_checkpoint):
    root = tmp_path_factory.mktemp("medicosam_viewer")
    dicom = build_dicom.build(root / "dicom")
    with running_orthanc(root / "orthanc") as pacs:
        upload(pacs, dicom)
        env = {**ENV, "MEDICOSAM_CHECKPOINT": str(phantom_checkpoint)}
        with running_server(pacs, root / "server.log", env=env) as server:
            assert wait_for_model(server)["available"]
            reference = gdcm_series_image(dicom / "phantom_ct")
            sitk.WriteImage(reference, str(root / "phantom_ct.nii.gz"))
            yield {"server": server, "study": build_dicom.uid("study"), "root": root,
                   "ct": sitk.GetArrayFromImage(reference), "ct_file": root / "phantom_ct.nii.gz"}


@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run ./scripts/install_system.sh")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.console_lines = []
        page.on("console", lambda message: page.console_lines.append(message.text))
        try:
            yield page
        finally:
            browser.close()


def _wait_for_console(page, text: str, timeout_ms: int = 60_000) -> None:
    waited = 0
    while not any(text in line for line in page.console_lines):
        if waited > timeout_ms:
            raise AssertionError(f"the viewer never logged '{text}'; last lines: {page.console_lines[-15:]}")
        page.wait_for_timeout(100)
        waited += 100


def _open(page, stack, protocol: str = "") -> float:
    """Open the study in the segmentation mode; returns the seconds from navigation to the first image."""
    started = time.perf_counter()
    suffix = f"&hangingProtocolId={protocol}" if protocol else ""
    page.goto(f"{stack['server']}/ohif/segmentation?StudyInstanceUIDs={stack['study']}{suffix}")
    _wait_for_console(page, "displaySetsToFirstImage")
    first_image = time.perf_counter() - started
    page.get_by_text("Confirm and hide").click()
    page.locator("#medicosam-panel").wait_for()
    _wait_for_console(page, "displaySetsToAllImages")
    return first_image


def _activate(page, view) -> dict:
    """Make ``view`` the active viewport as a user does, with a click (no drag) low in it; returns its frame."""
    frame = view.bounding_box()
    page.mouse.click(frame["x"] + 0.5 * frame["width"], frame["y"] + 0.93 * frame["height"])
    return frame


def _status(page) -> str:
    return page.locator("#medicosam-panel [data-role=status]").inner_text()


def _wait_for_answer(page, count: int, timeout_ms: int = 60_000) -> None:
    """Until the panel reports its ``count``-th mask (or an error)."""
    waited = 0
    while sum("MedicoSAM: mask on" in line for line in page.console_lines) < count:
        if any(line.startswith("MedicoSAM:") and "Server answered" in line for line in page.console_lines):
            raise AssertionError(f"the viewer showed an error: {_status(page)}")
        if waited > timeout_ms:
            raise AssertionError(f"no mask after {timeout_ms} ms; status: {_status(page)}")
        page.wait_for_timeout(50)
        waited += 50


LABELMAP_IN_GRID_ORDER = """(seriesUid) => {
    const { displaySetService } = window.services;
    const displaySet = displaySetService.getActiveDisplaySets().find(d => d.SeriesInstanceUID === seriesUid);
    const grid = window.medicosam.grid(displaySet);
    const segmentation = window.cornerstoneTools.segmentation.state.getSegmentations()[0];
    const byReference = new Map();
    for (const id of segmentation ? segmentation.representationData.Labelmap.imageIds : []) {
        const image = window.cornerstone.cache.getImage(id);
        byReference.set(image.referencedImageId, image.voxelManager.getScalarData());
    }
    const found = [];
    grid.imageIds.forEach((imageId, k) => {
        const pixels = byReference.get(imageId) || [];
        for (let n = 0; n < pixels.length; n++) if (pixels[n]) found.push(k * pixels.length + n);
    });
    return { sizes: grid.sizes, found };
}"""


def _labelmap(page, series_uid: str):
    """The viewer's labelmap as flat indices of marked voxels in [k, j, i] order, and the grid's sizes."""
    answer = page.evaluate(LABELMAP_IN_GRID_ORDER, series_uid)
    return np.array(answer["found"], dtype=np.int64), answer["sizes"]


def _served(stack, phantom_checkpoint, requests) -> np.ndarray:
    """What a fresh segmenter computes for the requests the viewer sent, in order (a later click on the same
    plane refines the earlier mask, as on the server), for the last one, as [k, j, i]."""
    segmenter = InteractiveSegmenter(ModelProvider(str(phantom_checkpoint)))
    for params in requests:
        context = ClickContext("reference", client_id=params["client_id"], label=params["label"],
                               reset_state=params.get("reset_state", False))
        result = segmenter.segment(stack["ct_file"], params, context, axis=params["axis"])
    return result.label.transpose(2, 1, 0)


def _ct_series_uid(stack) -> str:
    import pydicom

    return str(pydicom.dcmread(str(next((stack["root"] / "dicom" / "phantom_ct").glob("*.dcm"))),
                               stop_before_pixels=True).SeriesInstanceUID)


def test_a_box_dragged_on_the_axial_stack_draws_the_servers_mask_where_the_box_was(stack, page, phantom_checkpoint):
    first_image_s = _open(page, stack)
    series = _ct_series_uid(stack)
    view = page.locator("[data-viewport-uid='default']")
    frame = _activate(page, view)
    page.locator("#medicosam-panel button[data-tool='box']").click()
    x0, y0 = frame["x"] + 0.40 * frame["width"], frame["y"] + 0.52 * frame["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 70, y0 + 45, steps=6)
    released = time.perf_counter()
    page.mouse.up()
    _wait_for_answer(page, 1)
    box_to_mask_s = time.perf_counter() - released
    page.wait_for_timeout(500)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer_box_prompt.png"))

    sent = page.evaluate("() => window.medicosam.lastAnswer")
    params = sent["params"]
    assert params["axis"] == 2 and set(params) >= {"roi", "slice", "client_id", "label"}
    assert not params["foreground"] and not params["background"]

    # The box's voxels, by cornerstone's own transform of the drawn corners on the displayed image.
    drawn = page.evaluate("""() => {
        const [box] = window.cornerstoneTools.annotation.state.getAllAnnotations()
            .filter(a => a.metadata.toolName === 'MedicoSAMBox');
        const imageId = box.metadata.referencedImageId;
        const corners = box.data.handles.points.map(p => window.cornerstone.utilities.worldToImageCoords(imageId, p));
        const image = window.cornerstone.cache.getImage(imageId);
        return { corners, pixels: Array.from(image.voxelManager.getScalarData()), rows: image.rows,
                 columns: image.columns, imageId };
    }""")
    columns = [round(x - 0.5) for x, _ in drawn["corners"]]  # image coordinates put pixel centres at n + 0.5
    rows = [round(y - 0.5) for _, y in drawn["corners"]]
    i0, i1, j0, j1, k0, k1 = params["roi"]
    assert (i0, i1, j0, j1) == (min(columns), max(columns), min(rows), max(rows))
    assert k0 == k1 == params["slice"] and i1 - i0 > 5 and j1 - j0 > 5
    # The image the box was drawn on is the server's slice k, pixel for pixel: no flip, no transpose, no k reversal.
    shown = np.array(drawn["pixels"]).reshape(drawn["rows"], drawn["columns"])
    assert np.array_equal(shown, stack["ct"][params["slice"]])

    assert page.evaluate("() => window.medicosam.sent") == [params]
    served = _served(stack, phantom_checkpoint, [params])
    assert served.any() and not served.all()
    found, sizes = _labelmap(page, series)
    assert sizes == list(stack["ct"].shape[::-1])
    assert np.array_equal(found, np.flatnonzero(served.ravel()))
    assert set(np.argwhere(served)[:, 0]) == {params["slice"]}

    page.locator("#medicosam-panel button[data-action='undo']").click()
    assert _labelmap(page, series)[0].size == 0 and "undone" in _status(page)
    assert page.evaluate("""() => window.cornerstoneTools.annotation.state.getAllAnnotations()
        .filter(a => a.metadata.toolName.startsWith('MedicoSAM')).length""") == 0

    timings = {"page_to_first_image_s": round(first_image_s, 2), "box_to_mask_s": round(box_to_mask_s, 3),
               "viewer_measured_request_ms": sent["elapsedMs"], "server_total_s": sent["answer"]["latencies"]["total"]}
    (ARTIFACTS / "viewer_timings.json").write_text(json.dumps(timings, indent=1))
    print("viewer timings:", timings)


def test_points_on_the_sagittal_mpr_view_segment_that_sagittal_plane(stack, page, phantom_checkpoint):
    _open(page, stack, protocol="mpr")
    series = _ct_series_uid(stack)
    view = page.locator("[data-viewport-uid='mpr-sagittal']")
    frame = _activate(page, view)
    page.locator("#medicosam-panel button[data-tool='include']").click()
    page.mouse.click(frame["x"] + 0.5 * frame["width"], frame["y"] + 0.55 * frame["height"])
    _wait_for_answer(page, 1)
    page.locator("#medicosam-panel button[data-tool='exclude']").click()
    page.mouse.click(frame["x"] + 0.45 * frame["width"], frame["y"] + 0.40 * frame["height"])
    _wait_for_answer(page, 2)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "viewer_sagittal_points.png"))

    params = page.evaluate("() => window.medicosam.lastAnswer.params")
    assert params["axis"] == 0 and len(params["foreground"]) == 1 and len(params["background"]) == 1
    # The clicked points, by the CT volume cornerstone built for the MPR view (its own world → index); its k runs
    # over its own image order, which the grid (checked pixel for pixel in the box test) maps to the server's.
    indices = page.evaluate("""(seriesUid) => {
        const volume = window.cornerstone.cache.getVolumes().find(v => v.volumeId.startsWith('cornerstoneStreamingImageVolume'));
        const displaySet = window.services.displaySetService.getActiveDisplaySets().find(d => d.SeriesInstanceUID === seriesUid);
        const grid = window.medicosam.grid(displaySet);
        return window.cornerstoneTools.annotation.state.getAllAnnotations()
            .filter(a => a.metadata.toolName.startsWith('MedicoSAM'))
            .map(a => {
                const [i, j, k] = volume.imageData.worldToIndex(a.data.handles.points[0]).map(Math.round);
                return { tool: a.metadata.toolName, i, j, k: grid.sliceOf.get(volume.imageIds[k]) };
            });
    }""", series)
    by_tool = {entry["tool"]: entry for entry in indices}
    for key, tool in (("foreground", "MedicoSAMInclude"), ("background", "MedicoSAMExclude")):
        assert params[key][0] == [by_tool[tool]["i"], by_tool[tool]["j"], by_tool[tool]["k"]]
        assert params[key][0][0] == params["slice"]  # both points lie on the segmented sagittal plane
    sent = page.evaluate("() => window.medicosam.sent")
    assert len(sent) == 2 and sent[-1] == params
    served = _served(stack, phantom_checkpoint, sent)
    assert served.any()
    assert set(np.argwhere(served)[:, 2]) == {params["slice"]}
    found, _ = _labelmap(page, series)
    assert np.array_equal(found, np.flatnonzero(served.ravel()))
