"""MONAI Label tasks over the core: inference, training, next sample, and what they write and audit."""

from typing import TYPE_CHECKING

from medicosam_app.lazy_exports import lazy_exports

from .training_audit import audit_training

if TYPE_CHECKING:
    from .active_learning import DiceScoring, RandomStrategy, UncertaintyStrategy
    from .instances_infer import InstancesInfer
    from .interactive_infer import InteractiveInfer
    from .interactive_train import InteractiveTrain
    from .propagation_infer import PropagationInfer
    from .semantic_infer import SemanticInfer
    from .semantic_train import SemanticTrain, labelled_studies

__all__ = [
    "DiceScoring",
    "InstancesInfer",
    "InteractiveInfer",
    "InteractiveTrain",
    "PropagationInfer",
    "RandomStrategy",
    "SemanticInfer",
    "SemanticTrain",
    "UncertaintyStrategy",
    "audit_training",
    "labelled_studies",
]

# Imported on first use (PEP 562), not here: the tasks import monailabel, fastapi and torch, which
# :mod:`.training_audit` (the audit trail alone) does without.
_LAZY = {
    "DiceScoring": ".active_learning",
    "RandomStrategy": ".active_learning",
    "UncertaintyStrategy": ".active_learning",
    "InstancesInfer": ".instances_infer",
    "InteractiveInfer": ".interactive_infer",
    "InteractiveTrain": ".interactive_train",
    "PropagationInfer": ".propagation_infer",
    "SemanticInfer": ".semantic_infer",
    "SemanticTrain": ".semantic_train",
    "labelled_studies": ".semantic_train",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
