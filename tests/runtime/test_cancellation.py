"""The cancellation flag's mechanism: checkpoints do nothing without one, raise once the flag is set, follow the
request into copies of its dict and into worker threads; and a propagation stops at its next slice."""

from __future__ import annotations

import copy
import threading

import pytest

from conftest import requested
from medicosam_app.runtime.cancellation import (
    Cancellation, RequestCancelled, cancellable, current_cancellation, raise_if_cancelled,
)


def test_checkpoints_without_a_cancellation_do_nothing():
    raise_if_cancelled()
    assert current_cancellation() is None


def test_a_set_flag_stops_work_at_the_next_checkpoint_in_any_thread():
    cancellation = Cancellation()
    outcome = []

    def work():
        with cancellable(cancellation):
            raise_if_cancelled()  # not yet
            cancellation.cancel()  # as the event loop does when the client hangs up
            try:
                raise_if_cancelled()
            except RequestCancelled as error:
                outcome.append(error.status)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert outcome == [499]
    assert current_cancellation() is None  # the block's cancellation ended with it


def test_copies_of_a_request_share_the_flag():
    cancellation = Cancellation()
    request = {"image": "x", "flag": cancellation}
    copied = copy.deepcopy(request)
    assert copied["flag"] is cancellation and copy.copy(cancellation) is cancellation


def test_a_propagation_stops_when_its_client_goes(tmp_path, tiny_checkpoint):
    """A real walk through a volume: the flag set after a few slices ends it with RequestCancelled."""
    from conftest import asymmetric_array, write_volume
    from medicosam_app.embeddings.slice_embedder import SliceEmbedder
    from medicosam_app.interactive.slice_segmenter import ClickContext
    from medicosam_app.interactive.propagation_settings import PropagationSettings
    from medicosam_app.interactive.volume_segmenter import VolumeSegmenter
    from medicosam_app.model.provider import ModelProvider
    import medicosam_app.interactive.propagation as propagation

    path = write_volume(tmp_path / "v.nii.gz", asymmetric_array((40, 30, 24)))
    models = ModelProvider(str(tiny_checkpoint))
    segmenter = VolumeSegmenter(models, SliceEmbedder(models))
    cancellation = Cancellation()
    steps = []
    original = propagation.raise_if_cancelled

    def counting_checkpoint():
        steps.append(1)
        if len(steps) == 3:
            cancellation.cancel()
        original()

    settings = PropagationSettings(iou_threshold=0.0, min_predicted_iou=0.0)
    request = {"foreground": [[28, 9, 12]], "roi": [20, 35, 3, 15, 12, 12]}
    with pytest.MonkeyPatch.context() as patch, cancellable(cancellation):
        patch.setattr(propagation, "raise_if_cancelled", counting_checkpoint)
        with pytest.raises(RequestCancelled):
            segmenter.segment(path, requested(request), ClickContext("v"), axis=2, settings=settings)
    assert len(steps) == 3  # stopped at the checkpoint after the flag, not at the end of 23 slices

