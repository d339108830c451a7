"""Driving our viewer in headless Chromium as a user does, and reading back what it shows (shared by the viewer
tests): open a study, make a view active, drag a box, wait for the panel's answer, read the labelmap."""

from __future__ import annotations

import shutil
import time
from email.parser import BytesParser
from email.policy import default as email_policy
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


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


def wait_for_console(page, text: str, timeout_ms: int = 60_000) -> None:
    waited = 0
    while not any(text in line for line in page.console_lines):
        if waited > timeout_ms:
            raise AssertionError(f"the viewer never logged '{text}'; last lines: {page.console_lines[-15:]}")
        page.wait_for_timeout(100)
        waited += 100


def open_study(page, server: str, study: str, protocol: str = "") -> float:
    """Open ``study`` in the segmentation mode and wait for the panel to know the server's models; returns the
    seconds from navigation to the first image on screen."""
    page.console_lines.clear()
    started = time.perf_counter()
    suffix = f"&hangingProtocolId={protocol}" if protocol else ""
    page.goto(f"{server}/ohif/segmentation?StudyInstanceUIDs={study}{suffix}")
    wait_for_console(page, "displaySetsToFirstImage")
    first_image = time.perf_counter() - started
    banner = page.get_by_text("Confirm and hide")  # OHIF's notice, shown until confirmed once in this browser
    if banner.count():
        banner.click()
    page.locator("#medicosam-panel").wait_for()
    wait_for_console(page, "displaySetsToAllImages")
    wait_for_console(page, "MedicoSAM ready")
    return first_image


def activate(page, view) -> dict:
    """Make ``view`` the active viewport as a user does, with a click (no drag) low in it; returns its frame."""
    frame = view.bounding_box()
    page.mouse.click(frame["x"] + 0.5 * frame["width"], frame["y"] + 0.93 * frame["height"])
    return frame


def status(page) -> str:
    return page.locator("#medicosam-panel [data-role=status]").inner_text()


def wait_for_answer(page, count: int, timeout_ms: int = 60_000) -> str:
    """Until the panel has reported ``count`` finished actions; an error report fails at once. Returns the last."""
    waited = 0
    while True:
        reports = [line for line in page.console_lines if line.startswith("MedicoSAM [")]
        errors = [line for line in reports if line.startswith("MedicoSAM [error]")]
        if errors:
            raise AssertionError(f"the viewer reported an error: {errors[-1]}")
        done = [line for line in reports if line.startswith("MedicoSAM [done]")]
        if len(done) >= count:
            return done[count - 1]
        if waited > timeout_ms:
            raise AssertionError(f"{len(done)} of {count} answers after {timeout_ms} ms; status: {status(page)}")
        page.wait_for_timeout(50)
        waited += 50


def wait_for_error(page, timeout_ms: int = 60_000) -> str:
    """Until the panel reports an error; returns what it said."""
    waited = 0
    while not any(line.startswith("MedicoSAM [error]") for line in page.console_lines):
        if waited > timeout_ms:
            raise AssertionError(f"no error reported; status: {status(page)}")
        page.wait_for_timeout(50)
        waited += 50
    return status(page)


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


def labelmap(page, series_uid: str):
    """The viewer's labelmap as flat indices of marked voxels in [k, j, i] order, and the grid's sizes."""
    answer = page.evaluate(LABELMAP_IN_GRID_ORDER, series_uid)
    return np.array(answer["found"], dtype=np.int64), answer["sizes"]


def drag_box(page, frame: dict, left: float, top: float, width: float, height: float) -> float:
    """Drag a box from (left, top) of ``frame`` (fractions) over width × height pixels; returns the time of release."""
    x0, y0 = frame["x"] + left * frame["width"], frame["y"] + top * frame["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + width, y0 + height, steps=6)
    released = time.perf_counter()
    page.mouse.up()
    return released


def press(page, action: str) -> None:
    """A panel command (run, undo, propagate, semantic, instances, accept, next) or tool (include, exclude, box)."""
    kind = "data-tool" if action in ("include", "exclude", "box") else "data-action"
    page.locator(f"#medicosam-panel button[{kind}='{action}']").click()


def answer_label(response, tmp_path) -> np.ndarray:
    """The label file in an ``output=all`` answer the browser received, as [k, j, i]."""
    message = BytesParser(policy=email_policy).parsebytes(
        f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode() + response.body())
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "image":
            path = tmp_path / "answer.nrrd"
            path.write_bytes(part.get_content())
            return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    raise AssertionError("the answer holds no label")


def drawn_box(page) -> dict:
    """The last box drawn, as the active stack view renders it: its corners as continuous pixel indices of the
    image it was drawn on (vtk's world → index of the displayed image data: voxel centres at whole numbers), the
    image's id and its pixels. cornerstone's ``worldToImageCoords`` is not used: it swaps the two pixel spacings
    of an image whose pixels are not square (a radiograph with ImagerPixelSpacing 0.2 × 0.1)."""
    return page.evaluate("""() => {
        const boxes = window.cornerstoneTools.annotation.state.getAllAnnotations()
            .filter(a => a.metadata.toolName === 'MedicoSAMBox');
        const box = boxes[boxes.length - 1];
        const viewport = window.medicosam.activeView().viewport;
        const { imageData } = viewport.getImageData();
        const image = window.cornerstone.cache.getImage(box.metadata.referencedImageId);
        return { imageId: box.metadata.referencedImageId, boxes: boxes.length,
                 corners: box.data.handles.points.map(p => imageData.worldToIndex(p).slice(0, 2)),
                 pixels: Array.from(image.voxelManager.getScalarData()), rows: image.rows, columns: image.columns };
    }""")


def check_box(params: dict, drawn: dict) -> None:
    """The request's box [i0, i1, j0, j1] is the voxels nearest the drawn corners (an edge exactly between two
    voxels may round either way)."""
    columns = [i for i, _ in drawn["corners"]]
    rows = [j for _, j in drawn["corners"]]
    expected = (min(columns), max(columns), min(rows), max(rows))
    sent = params["roi"][:4]
    assert all(abs(s - edge) <= 0.5 + 1e-3 for s, edge in zip(sent, expected)), (sent, expected)
