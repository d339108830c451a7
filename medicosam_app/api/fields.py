"""The field types requests are declared with, and the base model that reads a request once.

Each field type is a pydantic type whose value is read by the parser of :mod:`medicosam_app.request_values` for
its kind, with the bounds declared on the field: both spellings clients send (``2`` and ``"2"``, ``true`` and
``"true"``) are accepted, anything else is refused with an :class:`~medicosam_app.errors.InvalidRequestError` that
names the key, says what it got and what is allowed. A key sent as ``null`` counts as absent (its default).
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Dict, Mapping, Optional, Sequence, Type, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, model_validator

from ..errors import InvalidRequestError
from ..request_values import (
    MAX_TEXT_LENGTH,
    optional_text,
    parse_bool,
    parse_choice,
    parse_int,
    parse_number,
    parse_text,
    shortened_repr,
)
from .tags import read_draft_tag

Model = TypeVar("Model", bound="RequestModel")


def _read_by(parser: Callable[..., Any], key: Optional[str] = None, **bounds: Any) -> BeforeValidator:
    """A validator that reads the field's value with ``parser``, naming it ``key`` (default: the field's name)."""

    def read(value: Any, info: ValidationInfo) -> Any:
        return parser(value, key or info.field_name, **bounds)

    return BeforeValidator(read)


def Integer(minimum: Optional[int] = None, maximum: Optional[int] = None, key: Optional[str] = None) -> Any:
    """A whole number within ``minimum..maximum`` (``2``, ``2.0``, ``"2"``; never ``true`` or ``2.5``)."""
    return Annotated[int, _read_by(parse_int, key, minimum=minimum, maximum=maximum)]


def Number(minimum: Optional[float] = None, maximum: Optional[float] = None, key: Optional[str] = None) -> Any:
    """A finite number within ``minimum..maximum`` (``0.5``, ``"0.5"``)."""
    return Annotated[float, _read_by(parse_number, key, minimum=minimum, maximum=maximum)]


def Choice(choices: Sequence[str], key: Optional[str] = None) -> Any:
    """One of ``choices``, spelled exactly."""
    return Annotated[str, _read_by(parse_choice, key, choices=tuple(choices))]


def Text(max_length: int = MAX_TEXT_LENGTH, key: Optional[str] = None) -> Any:
    """A non-empty name or id of at most ``max_length`` characters (an integer id is read as its digits)."""
    return Annotated[str, _read_by(parse_text, key, max_length=max_length)]


def OptionalText(max_length: int = MAX_TEXT_LENGTH, key: Optional[str] = None) -> Any:
    """As :func:`Text`, with an empty string read as absent (None)."""
    return Annotated[Optional[str], _read_by(optional_text, key, max_length=max_length)]


Flag = Annotated[bool, _read_by(parse_bool)]  # true/false, "true"/"false", yes/no, on/off, 1/0; nothing else


class RequestModel(BaseModel):
    """A request's keys as typed values, read once at the edge (the app's task adapters, and the HTTP guard that
    refuses a request before MONAI Label's endpoint runs, call the same model). Keys a model does not declare are
    left to others (MONAI Label's own ``model``, ``device``, ``result_extension``...)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, values: Any) -> Any:
        if not isinstance(values, Mapping):
            raise InvalidRequestError(f"The request's params must be a JSON object, got {shortened_repr(values)}.")
        return {key: value for key, value in values.items() if value is not None}

    def audit_summary(self) -> Dict[str, Any]:
        """What the request's audit line keeps of it (the prompts of a click; nothing for a model without any)."""
        return {}

    def sent(self, *names: str) -> Dict[str, Any]:
        """Those of ``names`` the request sent (defaults left out), with their values read: for the audit line."""
        return {name: getattr(self, name) for name in names if name in self.model_fields_set}

    @classmethod
    def read(cls: Type[Model], request: Mapping[str, Any]) -> Model:
        """The request's values as this model; a value of the wrong kind or out of range is a 4xx naming the key."""
        try:
            return cls.model_validate(request)
        except ValidationError as error:  # a type the field parsers did not see first (a nested model's shape)
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "params"
            if first["type"] == "missing":
                raise InvalidRequestError(f"'{key}' must be sent; it is missing.") from None
            raise InvalidRequestError(f"'{key}': {first['msg']}, got {shortened_repr(first.get('input'))}.") from None


class InferenceFields(RequestModel):
    """The keys every inference request may carry: who asks (``client_id``, Slicer's and OHIF's id of one viewer)
    and how the answer's label file is written (Slicer asks for ``.nrrd`` compressed, OHIF for ``.nrrd`` with
    ``result_compress: false``; an unknown extension falls back to ``.nii.gz`` when the label is written, as MONAI
    Label's tasks do). Read before the work starts, so a malformed option is a 422 at once.

    ``image`` is the image's id: the app's checked ``image_id`` where MONAI Label set one (it replaces ``image`` by
    the file's path before the task runs), else the ``image`` the client sent."""

    image: OptionalText(key="image") = None
    client_id: OptionalText() = None
    save_label: Flag = False  # MONAI Label's: keep the result as a draft label (never as 'final')
    label_tag: OptionalText() = None  # under this tag; 'original' by default
    timeout: Optional[Number(minimum=1)] = None  # MONAI Label's: seconds the inference may take
    result_extension: OptionalText(max_length=16) = None
    result_compress: Flag = True

    @model_validator(mode="before")
    @classmethod
    def _checked_image_id_first(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("image_id"):
            return {**values, "image": values["image_id"]}
        return values

    @model_validator(mode="before")
    @classmethod
    def _draft_tag(cls, values: Any) -> Any:
        if isinstance(values, dict) and parse_bool(values.get("save_label"), "save_label", default=False):
            return {**values, "label_tag": read_draft_tag(values.get("label_tag"))}
        return values

    def monai_label_options(self) -> Dict[str, Any]:
        """The options MONAI Label itself reads, as values it cannot misread: it took ``"save_label": "false"`` as
        true and saved the result as a label, and failed with a 500 on a ``timeout`` that is not a number."""
        options: Dict[str, Any] = {"save_label": self.save_label}
        if self.label_tag is not None:
            options["label_tag"] = self.label_tag
        if self.timeout is not None:
            options["timeout"] = self.timeout
        return options

    @property
    def result_suffix(self) -> str:
        return self.result_extension or ".nii.gz"
