"""Every configuration key, declared once: its name, type, default and meaning, in one pydantic-settings model.

A key is read from ``conf`` (MONAI Label's ``--conf key value``, or a command's flag), else from the environment
variable ``MEDICOSAM_<KEY>``, else its default. :class:`ConfigKeys` parses each value (see
:mod:`.values`); :class:`~medicosam_app.settings.Settings` builds the objects the server uses from it, and
``python -m medicosam_app config`` prints the reference table of docs/configuration.md from it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Type

from pydantic import Field, ValidationError, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..finetune.config import FinetuneConfig
from ..options import Options
from ..semantic.classes import DEFAULT_CLASSES
from ..semantic.config import TrainingConfig
from .values import (
    ENV_PREFIX, BatchSize, Classes, CompileChoice, EmbeddingStorage, Flag, GraphChoice, Integer, Modalities, Number, Origins, PositiveNumber, Url, UserPath, Viewer,
    WholeNumber,
)


def key(default: Any, description: str, shown: Optional[str] = None) -> Any:
    """A key's field. ``shown``: the default as the reference table writes it (Markdown), where the value is
    worked out at start-up (a folder inside ``cache_dir``, the device present) rather than written here."""
    return Field(default, description=description, json_schema_extra={"shown_default": shown} if shown else None)


class ServerKeys(BaseSettings):
    """The server's own keys, in the order the reference table lists them."""

    # The environment is read at every instantiation; decoding is off so a comma-separated list stays text for
    # its parser (pydantic-settings would read it as JSON); defaults pass through the same parsers as given text.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", enable_decoding=False, validate_default=True,
        coerce_numbers_to_str=True, arbitrary_types_allowed=True, frozen=True,
    )

    checkpoint: Optional[str] = key(
        None, "Path of the SAM/MedicoSAM weights; unset: the published checkpoint, from `cache_dir` or downloaded.")
    cache_dir: Optional[str] = key(
        None, "Where downloads go; the folders below default to places inside it.", "`~/.cache/medicosam`")
    download: Flag = key(True, "Allow downloading the published weights.")
    weights_url: Url = key(
        None, "A mirror of the same file (e.g. on the hospital network); its hash is still checked.",
        "the published URL")
    device: Optional[str] = key(None, "Torch device: `cpu`, `cuda`, `cuda:1` …", "`cuda` if present, else `cpu`")
    intensity: str = key(
        "volume", "Scanner intensities → SAM's image: `volume` (min–max of the volume, then of the slice, as the "
        "authors evaluated), `slice`, `percentile` (1–99 %), `window` (a CT window).")
    window_level: Number = key(40, "CT window level (HU) for `intensity` `window`.")
    window_width: Number = key(400, "CT window width (HU, above 0) for `intensity` `window`.")
    embedding_cache_mb: Integer = key(2048, "In-memory embedding cache budget in MiB (a ViT-B slice is 4 MiB).")
    embedding_disk_dir: Optional[str] = key(
        None, "Disk embedding cache, kept across restarts; `off` (or `0`, `false`, `no`, `none`) disables it.",
        "`<cache_dir>/embeddings`")
    embedding_disk_mb: Integer = key(20480, "Disk cache budget in MiB; least recently used slices are removed first.")
    volume_cache_mb: Integer = key(4096, "In-memory loaded-volume budget in MiB.")
    prefetch_radius: Integer = key(
        16, "After a click, encode this many slices on each side in the background; 0 disables.")
    prefetch_quiet_ms: Integer = key(
        1000, "Background encoding waits this long after the last click, so bursts of clicks run alone.")
    encode_batch_size: BatchSize = key(
        "auto", "Slices per encoder pass wherever many are embedded (precompute, prefetch, propagation), at least 1; "
        "`auto`: measured at model load on a GPU, 1 on a CPU (see below).")
    precision: str = key(
        "auto", "Encoder precision: `auto` measures the candidates at model load and remembers the choice per "
        "machine, torch and checkpoint in `<cache_dir>/precision/`; `fp32`, `bf16`, `int8` (CPU), `fp16` (GPU) force "
        "one. Embeddings are keyed by precision (see below).")
    embedding_storage: EmbeddingStorage = key(
        "auto", "Slice embeddings rounded to float16 (half the disk and memory traffic): `auto` if the probe's masks "
        "agree (mean IoU ≥ 0.98, checked once per machine and model), `fp16`, `fp32`.")
    compile_encoder: CompileChoice = key(
        "auto", "`torch.compile` the encoder's blocks in the background (cached in `<cache_dir>/compile`), used once "
        "faster with agreeing masks: `auto` on a GPU only, `on`, `off`; `/info` → `model.compile`.")
    decoder_cuda_graphs: GraphChoice = key(
        "auto", "The click's decoder replayed as a CUDA graph per prompt shape where that is faster with the same "
        "answer: `auto` on a GPU, `off`; `/info` → `model.decoder_graphs`.")
    fused_attention: Flag = key(
        True, "Encoder attention through `scaled_dot_product_attention` (same result within 1e-4).")
    malloc_tuning: Flag = key(
        True, "glibc malloc keeps the encoder's large tensors in one heap instead of mapping fresh pages for each "
        "pass ([performance.md](performance.md)); `false` leaves malloc as it is.")
    labels: Classes = key(
        DEFAULT_CLASSES, 'Classes of the semantic model: `liver,spleen` (values 1, 2, …) or JSON '
        '`{"liver": 1, "spleen": 6}`.')
    semantic_dir: Optional[str] = key(
        None, "Versions of the semantic decoder and the serving pointer.", "`<cache_dir>/semantic`")
    released_decoder: Optional[str] = key(
        None, "The released UNETR decoder (initialises new semantic models; scratch without it).",
        "`<cache_dir>/vit_b_medicosam_decoder.pt`")
    semantic_batch_size: Integer = key(4, "Slices per decoder pass in semantic inference.")
    semantic_downscale: Integer = key(
        1, "The semantic decoder's light path for CPUs: 2 or 4 decodes at 512² or 256² (the last ×2 upsamplings "
        "skipped, same weights) and resizes the logits; 1: the full 1024² decoder (see below).")
    retrain_after_labels: Integer = key(
        5, "Start a semantic training round once this many saved final labels are new; 0 disables.")
    retrain_schedule: str = key(
        "", "In-server training schedule: `daily 02:00` (server time), `every 6h`, `every 30m`; empty: off.", "off")
    interactive_dir: Optional[str] = key(
        None, "Versions of the finetuned interactive decoder and the serving pointer.", "`<cache_dir>/interactive`")
    finetune_after_labels: Integer = key(
        0, "Start a finetuning round once this many saved final labels are new to it; 0 (the default) disables: on a "
        "CPU server a round competes with clicks for the cores.")
    finetune_schedule: str = key("", "In-server finetuning schedule, as `retrain_schedule`.", "off")
    modalities: Modalities = key(
        "all", "Series a PACS datastore lists: `all` (every image series; SEG, SR, RTSTRUCT, PR, KO and other "
        "non-image series never) or a list such as `CT,MR,CR`. A `MONAI_LABEL_DICOMWEB_SEARCH_FILTER` other than "
        "MONAI Label's CT-only default wins.")
    users_file: UserPath = key(None, "Users, roles and password hashes; when set, sign-in is required.")
    token_lifetime_s: Integer = key(8 * 3600, "How long a sign-in lasts, in seconds.")
    cors_origins: Origins = key(
        None, "Other origins browsers may call from, comma-separated; `none` (or `off`, `self`): no other origin.",
        "`*` without sign-in, none with it")
    max_propagation_slices: WholeNumber = key(
        0, "The most slices one 3D or clip propagation walks, centred on its prompts (prompts spread wider: 413); "
        "0: no cap.")
    viewer: Viewer = key(
        "medicosam", "The browser viewer at `/ohif/`: `medicosam` (OHIF 3.13 + the MedicoSAM tools) or "
        "`monailabel` (MONAI Label's bundled OHIF).")
    viewer_dicomweb: Url = key(
        None, "A DICOMweb root browsers reach directly, instead of the server's proxy.", "through the server")
    audit_dir: Optional[str] = key(None, "The audit trail (JSON Lines, rotated by size).", "`<cache_dir>/audit`")
    dicom_cache_dir: Optional[str] = key(
        None, "Series downloaded from the PACS (DICOM + converted NIfTI) and local copies of labels.",
        "`<cache_dir>/dicomweb`")
    pacs_label_listing_s: WholeNumber = key(
        60, "Seconds the PACS's list of SEGs is reused; another replica's (or tool's) label is read after at most "
        "this ([replicas.md](replicas.md)).")
    pacs_retry_s: WholeNumber = key(30, "Seconds between sending again the labels the PACS did not take (it was away).")
    session_max_mb: PositiveNumber = key(
        4096, "MiB the files of one `PUT /session/` upload may hold together, at least 1 (an archive: unpacked, "
        "from its members' sizes, before unpacking); more is a 413.")

    @classmethod
    def read(cls, conf: Mapping[str, Any]) -> "ServerKeys":
        """The keys from ``conf`` (an empty value counts as not given; other keys of MONAI Label's conf are
        ignored), else the environment, else the defaults. A bad value raises the error its parser raised."""
        given = {name: value for name, value in conf.items() if name in cls.model_fields and value not in (None, "")}
        try:
            return cls(**given)
        except ValidationError as invalid:
            # pydantic gathers the parsers' errors into one; raise the first as its parser wrote it.
            first = invalid.errors()[0]
            cause = first.get("ctx", {}).get("error")
            if isinstance(cause, Exception):
                raise cause from None
            raise ValueError(f"{first['loc'][0]}: {first['msg']} (got {first['input']!r})") from None


# What each option of a training or finetuning round means; its key is ``train_<option>`` or
# ``finetune_<option>``. Its default and range stay the option set's own (applied by ``from_mapping`` when the
# settings are built), the ones a train request is checked against, so they are not repeated here.
TRAINING_OPTIONS: Dict[str, str] = {
    "epochs": "passes over the training set",
    "learning_rate": "the decoder's learning rate (medico-sam's)",
    "batch_size": "slices per optimiser step",
    "max_slices_per_image": "the most slices per image (every foreground slice and one empty slice in four, "
                            "thinned evenly)",
    "val_fraction": "share of the images held out for validation",
    "axis": "slicing axis (the interactive tasks', so their cached embeddings are reused)",
    "seed": "random seed",
    "warm_start": "continue from the serving version when its shape fits",
    "initial_features": "decoder width; the published decoder has 64",
}
FINETUNE_OPTIONS: Dict[str, str] = {
    "epochs": "passes over the training set",
    "learning_rate": "the decoder's learning rate (micro-sam's for the decoder of a trained SAM)",
    "batch_size": "objects per optimiser step",
    "sub_iterations": "the opening prompt and simulated corrections per object, as micro-sam trains",
    "mask_prompt_probability": "how often corrections also see the previous logits",
    "box_jitter": "each side of a box prompt moves by up to this share of the box's size",
    "max_slices_per_image": "foreground slices per image, evenly spread",
    "max_objects_per_slice": "the largest components of each slice",
    "val_fraction": "share of the images held out for the evaluation gate",
    "gate_slices_per_image": "the gate's evaluation: foreground slices per held-out image",
    "axis": "slicing axis (the interactive tasks', so their cached embeddings are reused)",
    "seed": "random seed",
    "warm_start": "continue from the serving version rather than the checkpoint's decoder",
    "encoder": "the image encoder: `frozen` (cached embeddings; a CPU can train), `lora` or `full` (a GPU's job)",
    "lora_rank": "rank of the encoder's LoRA adapters (`encoder` `lora`)",
    "encoder_learning_rate": "the encoder's learning rate (`encoder` `lora` or `full`)",
}
ROUNDS = (("train_", TrainingConfig, TRAINING_OPTIONS, "Semantic training round"),
          ("finetune_", FinetuneConfig, FINETUNE_OPTIONS, "Interactive finetuning round"))


def as_markdown(value: Any) -> str:
    """A default value as the reference table writes it: ``True`` → `` `true` ``, ``20`` → `` `20` ``."""
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _round_keys() -> Dict[str, Any]:
    """A field per option of each round, left as given (None: the option set's default) for ``from_mapping``,
    which checks it as a train request's option is checked."""
    fields: Dict[str, Any] = {}
    for prefix, options, meanings, what in ROUNDS:
        for option in dataclasses.fields(options):
            fields[prefix + option.name] = (
                Optional[str], key(None, f"{what}: {meanings[option.name]}.", as_markdown(option.default)))
    return fields


ConfigKeys = create_model(
    "ConfigKeys", __base__=ServerKeys, __doc__="Every configuration key: the server's, then each round's options.",
    **_round_keys(),
)


def round_options(keys: ServerKeys, prefix: str, options: Type[Options]) -> Dict[str, Any]:
    """The options of one round as given (``train_epochs`` → ``epochs``), for ``options.from_mapping``."""
    return {f.name: getattr(keys, prefix + f.name) for f in dataclasses.fields(options)}  # type: ignore[arg-type]
