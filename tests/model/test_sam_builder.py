import pickle

import pytest
import torch
from segment_anything import sam_model_registry

from medicosam_app.errors import CheckpointError
from medicosam_app.model.random_checkpoint import TINY_SAM, VIT_B_SAM, write_random_checkpoint
from medicosam_app.model.sam_builder import derive_architecture, load_sam, read_state_dict


def test_vit_b_architecture_is_read_from_segment_anythings_own_vit_b():
    reference = sam_model_registry["vit_b"]()
    arch = derive_architecture(reference.state_dict())
    assert arch == VIT_B_SAM
    assert arch.name == "vit_b"


@pytest.mark.parametrize("layout", ["sam", "micro_sam"])
def test_both_published_layouts_load_strictly_with_the_same_weights(tmp_path, layout):
    path = write_random_checkpoint(tmp_path / f"{layout}.pt", TINY_SAM, seed=1, layout=layout)
    sam, arch = load_sam(path)
    assert arch == TINY_SAM
    reference = write_random_checkpoint(tmp_path / "ref.pt", TINY_SAM, seed=1)
    expected = torch.load(reference, weights_only=True)
    for key, value in sam.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_truncated_file_is_rejected_with_a_clear_error(tmp_path, tiny_checkpoint):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_sam(broken)


def test_a_state_dict_that_is_not_sam_is_rejected(tmp_path):
    other = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        read_state_dict(other)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_pickle_with_code_is_not_executed(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"image_encoder.x": _Payload()}, f)
    with pytest.raises(CheckpointError):
        read_state_dict(evil)
    assert "code ran" not in capsys.readouterr().out


def test_missing_weights_are_named(tmp_path, tiny_checkpoint):
    state = torch.load(tiny_checkpoint, weights_only=True)
    del state["mask_decoder.iou_prediction_head.layers.0.weight"]
    partial = tmp_path / "partial.pt"
    torch.save(state, partial)
    with pytest.raises(CheckpointError, match="iou_prediction_head"):
        load_sam(partial)
