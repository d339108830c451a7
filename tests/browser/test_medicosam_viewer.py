"""Our viewer end to end in headless Chromium on a CT: OHIF 3.13 at /ohif/ with the MedicoSAM extension, the study
in a real Orthanc, the real server with a tiny model. A radiologist's gestures with the mouse: a box dragged on
the axial stack, points on the sagittal view of the MPR layout, undo, propagation, accept. Each time the
labelmap is read back from the viewer and compared voxel for voxel with what the server computed, and the
prompt's voxels are checked against cornerstone's own coordinate transforms and against the image the viewer
displays (the phantom is asymmetric, so a flip or transpose cannot pass). Accepting writes a DICOM SEG to the
PACS that decodes to the viewer's labelmap and shows up in the viewer. Screenshots and the measured timings are
kept in test-artifacts/.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pydicom
import pytest
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient

import build_dicom
from conftest import gdcm_series_image
from conftest import requested
from medicosam_app.interactive.slice_segmenter import ClickContext, InteractiveSegmenter
from medicosam_app.model.provider import ModelProvider
from server.harness import REPO, running_server, wait_for_model
from server.orthanc import running_orthanc, upload

from .viewer_page import (
    activate, answer_label, check_box, drag_box, drawn_box, labelmap, open_study, press, status, wait_for_answer,
)

ARTIFACTS = REPO / "test-artifacts"
ENV = {"MEDICOSAM_PREFETCH_RADIUS": "0", "MEDICOSAM_RETRAIN_AFTER_LABELS": "0"}


def serve_a_random_semantic_version(folder, checkpoint) -> None:
    """A semantic decoder version with random weights, promoted, for the tiny checkpoint: the semantic task then
    answers (with arbitrary classes), as after a first training round."""
    import torch

    from medicosam_app.model.checkpoints import file_xxh128
    from medicosam_app.semantic.classes import DEFAULT_CLASSES, SemanticClasses
    from medicosam_app.semantic.network import DecoderShape, UNETRDecoder
    from medicosam_app.learning.versions import VersionStore

    classes = SemanticClasses.parse(DEFAULT_CLASSES)
    shape = DecoderShape(num_classes=classes.num_classes, embed_dim=32, initial_features=4, image_size=1024)
    torch.manual_seed(0)
    store = VersionStore(folder)
    version = store.add(UNETRDecoder(shape).state_dict(), {
        "encoder_checkpoint": file_xxh128(checkpoint), "decoder_shape": shape.to_dict(),
        "labels": classes.label_names(), "metrics": {}})
    store.promote(version, "browser test")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, phantom_checkpoint):
    root = tmp_path_factory.mktemp("medicosam_viewer")
    dicom = build_dicom.build(root / "dicom")
    serve_a_random_semantic_version(root / "semantic", phantom_checkpoint)
    with running_orthanc(root / "orthanc") as pacs:
        upload(pacs, dicom)
        env = {**ENV, "MEDICOSAM_CHECKPOINT": str(phantom_checkpoint), "MEDICOSAM_SEMANTIC_DIR": str(root / "semantic")}
        with running_server(pacs, root / "server.log", env=env) as server:
            assert wait_for_model(server)["available"]
            reference = gdcm_series_image(dicom / "phantom_ct")
            sitk.WriteImage(reference, str(root / "phantom_ct.nii.gz"))
            ct_files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(dicom / "phantom_ct"))
            yield {"server": server, "study": build_dicom.uid("study"), "pacs": pacs,
                   "series": str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).SeriesInstanceUID),
                   "sop_uids": [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in ct_files],
                   "ct": sitk.GetArrayFromImage(reference), "ct_file": root / "phantom_ct.nii.gz"}


def _served(stack, phantom_checkpoint, requests) -> np.ndarray:
    """What a fresh segmenter computes for the requests the viewer sent, in order (a later click on the same
    plane refines the earlier mask, as on the server), for the last one, as [k, j, i]."""
    segmenter = InteractiveSegmenter(ModelProvider(str(phantom_checkpoint)))
    for params in requests:
        context = ClickContext("reference", client_id=params["client_id"], label=params["label"],
                               reset_state=params.get("reset_state", False))
        result = segmenter.segment(stack["ct_file"], requested(params), context, axis=params["axis"])
    return result.label.transpose(2, 1, 0)


def test_a_box_dragged_on_the_axial_stack_draws_the_servers_mask_where_the_box_was(stack, page, phantom_checkpoint):
    first_image_s = open_study(page, stack["server"], stack["study"])
    frame = activate(page, page.locator("[data-viewport-uid='default']"))
    press(page, "box")
    released = drag_box(page, frame, 0.40, 0.52, 70, 45)
    wait_for_answer(page, 1)
    box_to_mask_s = time.perf_counter() - released
    first = page.evaluate("() => window.medicosam.lastAnswer")
    # A second box on the same slice (it replaces the first): the warm case, the encoder's work is cached.
    released = drag_box(page, frame, 0.38, 0.50, 80, 55)
    wait_for_answer(page, 2)
    warm_box_to_mask_s = time.perf_counter() - released
    page.wait_for_timeout(500)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer_box_prompt.png"))

    sent = page.evaluate("() => window.medicosam.lastAnswer")
    params = sent["params"]
    assert params["axis"] == 2 and set(params) >= {"roi", "slice", "client_id", "label"}
    assert not params["foreground"] and not params["background"]

    # The box's voxels, by the transform the view renders with, on the displayed image.
    drawn = drawn_box(page)
    check_box(params, drawn)
    i0, i1, j0, j1, k0, k1 = params["roi"]
    assert k0 == k1 == params["slice"] and i1 - i0 > 5 and j1 - j0 > 5
    # The image the box was drawn on is the server's slice k, pixel for pixel: no flip, no transpose, no k reversal.
    shown = np.array(drawn["pixels"]).reshape(drawn["rows"], drawn["columns"])
    assert np.array_equal(shown, stack["ct"][params["slice"]])

    requests = page.evaluate("() => window.medicosam.sent")
    assert len(requests) == 2 and requests[-1] == params and requests[0] == first["params"]
    served = _served(stack, phantom_checkpoint, requests)
    assert served.any() and not served.all()
    found, sizes = labelmap(page, stack["series"])
    assert sizes == list(stack["ct"].shape[::-1])
    assert np.array_equal(found, np.flatnonzero(served.ravel()))
    assert set(np.argwhere(served)[:, 0]) == {params["slice"]}

    # Undo: the second box goes and the first comes back, with its mask; again: nothing is left.
    press(page, "undo")
    first_mask = _served(stack, phantom_checkpoint, requests[:1])
    assert np.array_equal(labelmap(page, stack["series"])[0], np.flatnonzero(first_mask.ravel()))
    assert page.evaluate("() => window.medicosam.prompts.params().roi") == first["params"]["roi"]
    press(page, "undo")
    assert labelmap(page, stack["series"])[0].size == 0 and "undone" in status(page)
    assert page.evaluate("""() => window.cornerstoneTools.annotation.state.getAllAnnotations()
        .filter(a => a.metadata.toolName.startsWith('MedicoSAM')).length""") == 0

    timings = {"page_to_first_image_s": round(first_image_s, 2), "cold_box_to_mask_s": round(box_to_mask_s, 3),
               "warm_box_to_mask_s": round(warm_box_to_mask_s, 3), "warm_request_in_viewer_ms": sent["elapsedMs"],
               "warm_server_total_s": sent["answer"]["latencies"]["total"]}
    (ARTIFACTS / "viewer_timings.json").write_text(json.dumps(timings, indent=1))
    print("viewer timings:", timings)


def test_dragging_a_box_corner_segments_again_with_the_moved_box(stack, page, phantom_checkpoint):
    open_study(page, stack["server"], stack["study"])
    frame = activate(page, page.locator("[data-viewport-uid='default']"))
    press(page, "box")
    drag_box(page, frame, 0.40, 0.52, 70, 45)
    wait_for_answer(page, 1)
    first = page.evaluate("() => window.medicosam.lastAnswer.params")
    corner_x, corner_y = frame["x"] + 0.40 * frame["width"] + 70, frame["y"] + 0.52 * frame["height"] + 45
    page.mouse.move(corner_x, corner_y)  # grab the box's lower right handle and pull it outwards
    page.mouse.down()
    page.mouse.move(corner_x + 30, corner_y + 25, steps=6)
    page.mouse.up()
    said = wait_for_answer(page, 2)
    moved = page.evaluate("() => window.medicosam.lastAnswer.params")
    assert moved["slice"] == first["slice"]
    assert moved["roi"][1] > first["roi"][1] and moved["roi"][3] > first["roi"][3], (first["roi"], moved["roi"])
    assert moved["roi"][0] == first["roi"][0] and moved["roi"][2] == first["roi"][2]  # the other corner stayed
    check_box(moved, drawn_box(page))
    requests = page.evaluate("() => window.medicosam.sent")
    assert len(requests) == 2, said
    found, _ = labelmap(page, stack["series"])
    assert np.array_equal(found, np.flatnonzero(_served(stack, phantom_checkpoint, requests).ravel()))


@pytest.mark.parametrize("view, axis", [("mpr-sagittal", 0), ("mpr-coronal", 1)])
def test_points_on_a_non_axial_mpr_view_segment_that_plane(stack, page, phantom_checkpoint, view, axis):
    open_study(page, stack["server"], stack["study"], protocol="mpr")
    frame = activate(page, page.locator(f"[data-viewport-uid='{view}']"))
    press(page, "include")
    page.mouse.click(frame["x"] + 0.5 * frame["width"], frame["y"] + 0.55 * frame["height"])
    wait_for_answer(page, 1)
    plane = page.evaluate("() => window.medicosam.currentPlane()")
    press(page, "exclude")
    page.mouse.click(frame["x"] + 0.45 * frame["width"], frame["y"] + 0.40 * frame["height"])
    try:
        wait_for_answer(page, 2)
    except AssertionError as error:  # say which plane each click fell on: a view that moved between them, or not
        sent = page.evaluate("() => window.medicosam.sent")
        now = page.evaluate("() => window.medicosam.currentPlane()")
        raise AssertionError(f"{error}; plane at the first answer {plane}, now {now}; sent {sent}") from None
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / f"viewer_{view}_points.png"))

    params = page.evaluate("() => window.medicosam.lastAnswer.params")
    assert params["axis"] == axis and len(params["foreground"]) == 1 and len(params["background"]) == 1
    # The clicked points, by the CT volume cornerstone built for the MPR view (its own world → index); its k runs
    # over its own image order, which the grid (checked pixel for pixel in the box test) maps to the server's.
    indices = page.evaluate("""(seriesUid) => {
        const volume = window.cornerstone.cache.getVolumes().find(v => v.volumeId.startsWith('cornerstoneStreamingImageVolume'));
        const displaySet = window.services.displaySetService.getActiveDisplaySets().find(d => d.SeriesInstanceUID === seriesUid);
        const grid = window.medicosam.grid(displaySet);
        return window.cornerstoneTools.annotation.state.getAllAnnotations()
            .filter(a => a.metadata.toolName.startsWith('MedicoSAM'))
            .map(a => {
                const [i, j, k] = volume.imageData.worldToIndex(a.data.handles.points[0]);
                return { tool: a.metadata.toolName, voxel: [i, j, grid.sliceOf.get(volume.imageIds[Math.round(k)])] };
            });
    }""", stack["series"])
    by_tool = {entry["tool"]: entry["voxel"] for entry in indices}
    for key, tool in (("foreground", "MedicoSAMInclude"), ("background", "MedicoSAMExclude")):
        in_plane = [a for a in range(3) if a != axis]
        assert [params[key][0][a] for a in in_plane] == [round(by_tool[tool][a]) for a in in_plane]
        # Both points lie on the segmented plane. This view is centred on the volume, half way between two
        # slices (96 rows: 47.5): the viewer rounds that one way for every mark, whatever the float noise.
        assert params[key][0][axis] == params["slice"] and abs(by_tool[tool][axis] - params["slice"]) <= 0.501
    sent = page.evaluate("() => window.medicosam.sent")
    assert len(sent) == 2 and sent[-1] == params
    served = _served(stack, phantom_checkpoint, sent)
    assert served.any()
    assert set(np.argwhere(served)[:, 2 - axis]) == {params["slice"]}  # served is [k, j, i]
    found, _ = labelmap(page, stack["series"])
    assert np.array_equal(found, np.flatnonzero(served.ravel()))


def test_semantic_draws_every_class_named_and_coloured_as_the_server_says(stack, page, tmp_path):
    open_study(page, stack["server"], stack["study"])
    activate(page, page.locator("[data-viewport-uid='default']"))
    page.locator("#medicosam-panel").hover()
    assert not page.locator("#medicosam-panel button[data-action='semantic']").is_disabled()
    # Playwright gives up on a response after 30 s by default; the whole volume on a loaded CI machine takes longer.
    with page.expect_response(lambda r: "/infer/medicosam_semantic" in r.url, timeout=120_000) as answered:
        press(page, "semantic")
    said = wait_for_answer(page, 1, timeout_ms=120_000)
    assert said.startswith("MedicoSAM [done] semantic:") and "grey_matter" in said, said
    answer = answer_label(answered.value, tmp_path)
    assert set(np.unique(answer)) - {0}, "the random decoder labelled nothing"
    found, _ = labelmap(page, stack["series"])
    assert np.array_equal(found, np.flatnonzero(answer.ravel()))
    values = page.evaluate("""(seriesUid) => {
        const displaySet = window.services.displaySetService.getActiveDisplaySets().find(d => d.SeriesInstanceUID === seriesUid);
        const id = `medicosam-${displaySet.displaySetInstanceUID}`;
        const { segmentationService, viewportGridService } = window.services;
        const segments = segmentationService.getSegmentation(id).segments;
        const viewportId = viewportGridService.getActiveViewportId();
        return Object.entries(segments).map(([index, s]) => [Number(index), s.label,
            Array.from(segmentationService.getSegmentColor(viewportId, id, Number(index))).slice(0, 3)]);
    }""", stack["series"])
    info = requests.get(f"{stack['server']}/info/", timeout=10).json()
    labels = info["models"]["medicosam_semantic"]["labels"]
    colors = info["capabilities"]["medicosam_semantic"]["label_colors"]
    assert sorted(values) == sorted([value, name, colors[name]] for name, value in labels.items())
    # The labelmap's values are the classes' label values.
    in_browser = page.evaluate(LABEL_VALUES, stack["series"])
    assert sorted(in_browser) == sorted(int(v) for v in set(np.unique(answer)) - {0})
    page.screenshot(path=str(ARTIFACTS / "viewer_semantic.png"))
    press(page, "undo")
    assert labelmap(page, stack["series"])[0].size == 0


LABEL_VALUES = """(seriesUid) => {
    const displaySet = window.services.displaySetService.getActiveDisplaySets().find(d => d.SeriesInstanceUID === seriesUid);
    const segmentation = window.cornerstoneTools.segmentation.state.getSegmentation(`medicosam-${displaySet.displaySetInstanceUID}`);
    const values = new Set();
    for (const id of segmentation.representationData.Labelmap.imageIds) {
        for (const v of window.cornerstone.cache.getImage(id).voxelManager.getScalarData()) if (v) values.add(v);
    }
    return Array.from(values);
}"""


def test_propagation_then_accept_writes_a_seg_the_viewer_shows(stack, page, tmp_path):
    open_study(page, stack["server"], stack["study"])
    frame = activate(page, page.locator("[data-viewport-uid='default']"))
    press(page, "box")
    drag_box(page, frame, 0.40, 0.52, 70, 45)
    wait_for_answer(page, 1)
    # No stop rule, so the tiny random model's mask runs through every slice (a real model stops at the organ).
    page.evaluate("() => { window.medicosam.propagationOptions = { iou_threshold: 0, min_predicted_iou: 0 }; }")
    with page.expect_response(lambda r: "/infer/medicosam_3d" in r.url, timeout=120_000) as answered:
        press(page, "propagate")
    said = wait_for_answer(page, 2)
    assert "propagated over slices 1–40" in said, said
    propagated = answer_label(answered.value, tmp_path)
    assert len({k for k in np.argwhere(propagated)[:, 0]}) > 1
    found, _ = labelmap(page, stack["series"])
    class_value = page.evaluate("() => window.medicosam.segment")
    assert np.array_equal(found, np.flatnonzero(propagated.ravel()))
    shown = np.zeros(stack["ct"].shape, np.uint8).ravel()
    shown[found] = class_value

    before = len(DICOMwebClient(stack["pacs"]).search_for_series(search_filters={"Modality": "SEG"}))
    press(page, "accept")
    assert "accepted" in wait_for_answer(page, 3)
    segs = DICOMwebClient(stack["pacs"]).search_for_series(search_filters={"Modality": "SEG"})
    assert len(segs) == before + 1
    meta = pydicom.Dataset.from_json(segs[-1])
    seg = DICOMwebClient(stack["pacs"]).retrieve_series(str(meta.StudyInstanceUID), str(meta.SeriesInstanceUID))[0]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == stack["series"]
    import highdicom as hd

    buffer = io.BytesIO()
    seg.save_as(buffer)
    parsed = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(buffer.getvalue())))
    names = {int(s.SegmentNumber): s.SegmentLabel for s in parsed.SegmentSequence}
    assert names[class_value] == page.evaluate("() => window.medicosam.label")
    frames = parsed.get_pixels_by_source_instance(stack["sop_uids"], combine_segments=True,
                                                  assert_missing_frames_are_empty=True)
    assert np.array_equal(frames.ravel(), shown)  # [k, j, i], the viewer's labelmap as it was accepted

    # Reopened, the study lists the SEG next to the CT.
    open_study(page, stack["server"], stack["study"])
    listed = page.evaluate("""() => window.services.displaySetService.getActiveDisplaySets()
        .map(d => [d.Modality, d.SeriesInstanceUID])""")
    assert ["SEG", str(meta.SeriesInstanceUID)] in listed
    # Opened as a radiologist does (double click on its thumbnail), the SEG is the accepted labelmap again.
    page.get_by_text("SEG", exact=True).first.dblclick()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        loaded = page.evaluate("""(segUid) => window.services.segmentationService.getSegmentations()
            .filter(s => !s.segmentationId.startsWith('medicosam-')).map(s => s.segmentationId)""", str(meta.SeriesInstanceUID))
        if loaded:
            break
        for answer in ("Yes", "Load"):  # OHIF may ask before it loads a segmentation
            button = page.get_by_role("button", name=answer)
            if button.count():
                button.first.click()
        page.wait_for_timeout(500)
    assert loaded, "the SEG did not load in the viewer"
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "viewer_after_accept.png"))
    reopened = page.evaluate("""([segmentationId, seriesUid]) => {
        const segmentation = window.cornerstoneTools.segmentation.state.getSegmentation(segmentationId);
        const displaySet = window.services.displaySetService.getActiveDisplaySets().find(d => d.SeriesInstanceUID === seriesUid);
        const grid = window.medicosam.grid(displaySet);
        const byReference = new Map();
        for (const id of segmentation.representationData.Labelmap.imageIds) {
            const image = window.cornerstone.cache.getImage(id);
            byReference.set(image.referencedImageId, image.voxelManager.getScalarData());
        }
        const found = [];
        grid.imageIds.forEach((imageId, k) => {
            const pixels = byReference.get(imageId) || [];
            for (let n = 0; n < pixels.length; n++) if (pixels[n]) found.push([k * pixels.length + n, pixels[n]]);
        });
        return { found, labels: Object.values(segmentation.segments).map(s => s.label) };
    }""", [loaded[0], stack["series"]])
    assert np.array_equal(np.array([n for n, _ in reopened["found"]]), np.flatnonzero(shown))
    assert page.evaluate("() => window.medicosam.label") in reopened["labels"]
    # In the class's colour (the SEG's CIELab value), not OHIF's default for a SEG without one.
    color = page.evaluate("""(segmentationId) => Array.from(window.services.segmentationService.getSegmentColor(
        window.services.viewportGridService.getActiveViewportId(), segmentationId, 1)).slice(0, 3)""", loaded[0])
    expected = requests.get(f"{stack['server']}/info/", timeout=10).json()["capabilities"]["medicosam_semantic"][
        "label_colors"][page.evaluate("() => window.medicosam.label")]
    assert max(abs(a - b) for a, b in zip(color, expected)) <= 2, (color, expected)

    # Next: the active-learning strategy's pick among the unlabelled series (the MR) opens in the viewer.
    press(page, "next")
    page.wait_for_url(lambda url: "initialSeriesInstanceUID=" in url, timeout=60_000)
    mr = [uid for modality, uid in listed if modality == "MR"]
    assert f"initialSeriesInstanceUID={mr[0]}" in page.url and f"StudyInstanceUIDs={stack['study']}" in page.url
