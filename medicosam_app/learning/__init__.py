"""What both learners share: decoder versions and the serving pointer, the labelled images, a round's decision."""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .labelled_images import LabelledImage, find_labelled_images, read_labelled, unlabelled_images
    from .rounds import RoundSummary, decide_round, split_images
    from .versions import TrainingBusyError, VersionStore, trained_on_checkpoint

__all__ = [
    "LabelledImage",
    "RoundSummary",
    "TrainingBusyError",
    "VersionStore",
    "decide_round",
    "find_labelled_images",
    "read_labelled",
    "split_images",
    "trained_on_checkpoint",
    "unlabelled_images",
]

# All imported on first use (PEP 562), not here: every module of this package imports torch (and
# :mod:`.labelled_images` and :mod:`.rounds` SimpleITK and segment_anything), so importing the package alone does not.
_LAZY = {
    "LabelledImage": ".labelled_images",
    "find_labelled_images": ".labelled_images",
    "read_labelled": ".labelled_images",
    "unlabelled_images": ".labelled_images",
    "RoundSummary": ".rounds",
    "decide_round": ".rounds",
    "split_images": ".rounds",
    "TrainingBusyError": ".versions",
    "VersionStore": ".versions",
    "trained_on_checkpoint": ".versions",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
