"""The request layer: what clients send, read once into the typed values the core takes.

One pydantic model per family of requests (:class:`ClickRequest` for one click, :class:`PropagationRequest`,
:class:`InstanceRequest`, :class:`SemanticRequest`); the app's task adapters and the HTTP guard in front of MONAI
Label's endpoint call the same model, so a bad request is refused with the same message whichever way it came.
Below this layer no request dict travels: the segmenters take prompts, a context and settings.
"""

from .batch import BatchInferRequest
from .clicks import ClickRequest
from .fields import InferenceFields, RequestModel
from .instances import GridFields, InstanceRequest
from .labels import LabelSaveParams, read_label_info
from .limits import check_json_values, require_small_json
from .next_sample import NextSampleRequest
from .prompts import MAX_POINTS, PromptFields
from .propagation import PropagationFields, PropagationRequest
from .semantic import SemanticRequest
from .tags import read_draft_tag, read_label_tag

__all__ = [
    "MAX_POINTS",
    "BatchInferRequest",
    "ClickRequest",
    "GridFields",
    "InferenceFields",
    "InstanceRequest",
    "LabelSaveParams",
    "NextSampleRequest",
    "PromptFields",
    "PropagationFields",
    "PropagationRequest",
    "RequestModel",
    "SemanticRequest",
    "check_json_values",
    "read_draft_tag",
    "read_label_info",
    "read_label_tag",
    "require_small_json",
]
