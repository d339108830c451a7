"""The configuration keys: one model read from ``--conf``, else the ``MEDICOSAM_*`` environment, else defaults;
the defaults, env names and errors the server had before the model; the reference table in the docs."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from medicosam_app.errors import InvalidRequestError
from medicosam_app.finetune.config import FinetuneConfig
from medicosam_app.semantic.classes import SemanticClasses
from medicosam_app.semantic.config import TrainingConfig
from medicosam_app.settings import ConfigKeys, Settings
from medicosam_app.settings.values import env_name

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- config:begin -->\n", "<!-- config:end -->"

# Settings.from_conf({}) of the code before the settings model, with no MEDICOSAM_* variable and HOME=<home>.
OLD_DEFAULTS: Dict[str, Any] = {
    "checkpoint": None, "cache_dir": None, "allow_download": True, "weights_url": None, "device": None,
    "intensity": ("volume", 40.0, 400.0), "embedding_cache_mb": 2048, "volume_cache_mb": 4096,
    "embedding_disk_dir": "<home>/.cache/medicosam/embeddings", "embedding_disk_mb": 20480, "prefetch_radius": 16,
    "prefetch_quiet_ms": 1000, "encode_batch_size": None, "precision": "auto", "embedding_storage": "auto",
    "compile_encoder": "auto", "decoder_cuda_graphs": "auto", "fused_attention": True,
    "malloc_tuning": True, "classes": SemanticClasses(("grey_matter", "white_matter"), (1, 2)),
    "semantic_dir": "<home>/.cache/medicosam/semantic", "released_decoder": None, "semantic_batch_size": 4,
    "semantic_downscale": 1,
    "training": TrainingConfig(epochs=20, learning_rate=1e-4, batch_size=4, max_slices_per_image=64, val_fraction=0.2,
                               axis=2, seed=0, warm_start=True, initial_features=64),
    "retrain_after_labels": 5, "retrain_schedule": "", "interactive_dir": "<home>/.cache/medicosam/interactive",
    "finetune": FinetuneConfig(epochs=10, learning_rate=1e-5, batch_size=8, sub_iterations=8,
                               mask_prompt_probability=0.5, box_jitter=0.1, max_slices_per_image=32,
                               max_objects_per_slice=8, val_fraction=0.2, gate_slices_per_image=16, axis=2, seed=0,
                               warm_start=True, encoder="frozen", lora_rank=4, encoder_learning_rate=1e-5),
    "finetune_after_labels": 0, "finetune_schedule": "", "dicom_modalities": ("ALL",),
    "dicom_cache_dir": "<home>/.cache/medicosam/dicomweb", "pacs_label_listing_s": 60, "pacs_retry_s": 30,
    "session_max_mb": 4096, "users_file": None, "audit_dir": "<home>/.cache/medicosam/audit",
    "token_lifetime_s": 28800, "cors_origins": None, "max_propagation_slices": 0, "viewer": "medicosam",
    "viewer_dicomweb": None,
}

# Every variable the code before the settings model read (train_/finetune_ options: one per field, below), with a
# value other than the default and how it shows in the settings.
Check = Callable[[Settings], Any]
OLD_ENV_NAMES: List[Tuple[str, str, Check, Any]] = [
    ("MEDICOSAM_CHECKPOINT", "/w/sam.pt", lambda s: s.checkpoint, "/w/sam.pt"),
    ("MEDICOSAM_CACHE_DIR", "/c", lambda s: s.semantic_dir, Path("/c/semantic")),
    ("MEDICOSAM_DOWNLOAD", "no", lambda s: s.allow_download, False),
    ("MEDICOSAM_WEIGHTS_URL", "https://mirror/w.pt", lambda s: s.weights_url, "https://mirror/w.pt"),
    ("MEDICOSAM_DEVICE", "cuda:1", lambda s: s.device, "cuda:1"),
    ("MEDICOSAM_INTENSITY", "slice", lambda s: s.intensity.mode, "slice"),
    ("MEDICOSAM_WINDOW_LEVEL", "50", lambda s: s.intensity.window_level, 50.0),
    ("MEDICOSAM_WINDOW_WIDTH", "350", lambda s: s.intensity.window_width, 350.0),
    ("MEDICOSAM_EMBEDDING_CACHE_MB", "100", lambda s: s.embedding_cache_mb, 100),
    ("MEDICOSAM_VOLUME_CACHE_MB", "200", lambda s: s.volume_cache_mb, 200),
    ("MEDICOSAM_EMBEDDING_DISK_DIR", "off", lambda s: s.embedding_disk_dir, None),
    ("MEDICOSAM_EMBEDDING_DISK_MB", "300", lambda s: s.embedding_disk_mb, 300),
    ("MEDICOSAM_PREFETCH_RADIUS", "0", lambda s: s.prefetch_radius, 0),
    ("MEDICOSAM_PREFETCH_QUIET_MS", "5", lambda s: s.prefetch_quiet_ms, 5),
    ("MEDICOSAM_ENCODE_BATCH_SIZE", "3", lambda s: s.encode_batch_size, 3),
    ("MEDICOSAM_PRECISION", "int8", lambda s: s.precision, "int8"),
    ("MEDICOSAM_EMBEDDING_STORAGE", "FP16", lambda s: s.embedding_storage, "fp16"),
    ("MEDICOSAM_COMPILE_ENCODER", "off", lambda s: s.compile_encoder, "off"),
    ("MEDICOSAM_DECODER_CUDA_GRAPHS", "OFF", lambda s: s.decoder_cuda_graphs, "off"),
    ("MEDICOSAM_FUSED_ATTENTION", "off", lambda s: s.fused_attention, False),
    ("MEDICOSAM_MALLOC_TUNING", "0", lambda s: s.malloc_tuning, False),
    ("MEDICOSAM_LABELS", "liver,spleen", lambda s: s.classes.label_names(), {"liver": 1, "spleen": 2}),
    ("MEDICOSAM_SEMANTIC_DIR", "/s", lambda s: s.semantic_dir, Path("/s")),
    ("MEDICOSAM_RELEASED_DECODER", "/d.pt", lambda s: s.released_decoder, "/d.pt"),
    ("MEDICOSAM_SEMANTIC_BATCH_SIZE", "2", lambda s: s.semantic_batch_size, 2),
    ("MEDICOSAM_SEMANTIC_DOWNSCALE", "4", lambda s: s.semantic_downscale, 4),
    ("MEDICOSAM_RETRAIN_AFTER_LABELS", "9", lambda s: s.retrain_after_labels, 9),
    ("MEDICOSAM_RETRAIN_SCHEDULE", "every 30m", lambda s: s.retrain_schedule, "every 30m"),
    ("MEDICOSAM_INTERACTIVE_DIR", "/i", lambda s: s.interactive_dir, Path("/i")),
    ("MEDICOSAM_FINETUNE_AFTER_LABELS", "7", lambda s: s.finetune_after_labels, 7),
    ("MEDICOSAM_FINETUNE_SCHEDULE", "daily 02:00", lambda s: s.finetune_schedule, "daily 02:00"),
    ("MEDICOSAM_MODALITIES", "ct, mr", lambda s: s.dicom_modalities, ("CT", "MR")),
    ("MEDICOSAM_DICOM_CACHE_DIR", "/p", lambda s: s.dicom_cache_dir, Path("/p")),
    ("MEDICOSAM_PACS_LABEL_LISTING_S", "0", lambda s: s.pacs_label_listing_s, 0),
    ("MEDICOSAM_PACS_RETRY_S", "5", lambda s: s.pacs_retry_s, 5),
    ("MEDICOSAM_SESSION_MAX_MB", "10", lambda s: s.session_max_mb, 10),
    ("MEDICOSAM_USERS_FILE", "/u.json", lambda s: s.users_file, Path("/u.json")),
    ("MEDICOSAM_AUDIT_DIR", "/a", lambda s: s.audit_dir, Path("/a")),
    ("MEDICOSAM_TOKEN_LIFETIME_S", "60", lambda s: s.token_lifetime_s, 60),
    ("MEDICOSAM_CORS_ORIGINS", "https://a/,https://b", lambda s: s.cors_origins, ("https://a", "https://b")),
    ("MEDICOSAM_MAX_PROPAGATION_SLICES", "100", lambda s: s.max_propagation_slices, 100),
    ("MEDICOSAM_VIEWER", "MonaiLabel", lambda s: s.viewer, "monailabel"),
    ("MEDICOSAM_VIEWER_DICOMWEB", "https://pacs/dicom-web", lambda s: s.viewer_dicomweb, "https://pacs/dicom-web"),
]


def round_option_values(options: Any) -> List[Tuple[str, str, Any]]:
    """(field, a value other than the default, that value parsed) for each option of a round."""
    values = []
    for f in dataclasses.fields(options):
        if f.type in ("bool", bool):
            values.append((f.name, "false", False))
        elif f.name in options.CHOICES:
            values.append((f.name, options.CHOICES[f.name][-1], options.CHOICES[f.name][-1]))
        else:
            high = options.LIMITS[f.name][1]
            values.append((f.name, str(high), high))
    return values


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MEDICOSAM_* variable and a home of its own; returns the home."""
    for name in [name for name in os.environ if name.startswith("MEDICOSAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_defaults_are_the_old_defaults(clean_env: Path):
    settings = Settings.from_conf({})
    assert [f.name for f in dataclasses.fields(Settings)] == list(OLD_DEFAULTS)
    for name, old in OLD_DEFAULTS.items():
        value = getattr(settings, name)
        if name == "intensity":
            value = (value.mode, value.window_level, value.window_width)
        if isinstance(old, str) and old.startswith("<home>"):
            old = Path(old.replace("<home>", str(clean_env)))
        assert value == old and type(value) is type(old), name


def test_every_old_env_name_is_still_read(clean_env: Path, monkeypatch: pytest.MonkeyPatch):
    for env, text, read, expected in OLD_ENV_NAMES:
        with monkeypatch.context() as patch:
            patch.setenv(env, text)
            assert read(Settings.from_conf({})) == expected, env
    for prefix, attribute, options in (("TRAIN", "training", TrainingConfig), ("FINETUNE", "finetune", FinetuneConfig)):
        for name, text, expected in round_option_values(options):
            with monkeypatch.context() as patch:
                patch.setenv(f"MEDICOSAM_{prefix}_{name.upper()}", text)
                assert getattr(getattr(Settings.from_conf({}), attribute), name) == expected, name
    old_names = {env for env, *_ in OLD_ENV_NAMES}
    old_names |= {f"MEDICOSAM_TRAIN_{f.name.upper()}" for f in dataclasses.fields(TrainingConfig)}
    old_names |= {f"MEDICOSAM_FINETUNE_{f.name.upper()}" for f in dataclasses.fields(FinetuneConfig)}
    assert {env_name(key) for key in ConfigKeys.model_fields} == old_names


def test_conf_wins_over_the_environment_which_wins_over_the_default(clean_env: Path, monkeypatch: pytest.MonkeyPatch):
    assert Settings.from_conf({}).prefetch_radius == 16
    monkeypatch.setenv("MEDICOSAM_PREFETCH_RADIUS", "3")
    monkeypatch.setenv("MEDICOSAM_DOWNLOAD", "false")
    monkeypatch.setenv("MEDICOSAM_CACHE_DIR", "/from/env")
    monkeypatch.setenv("MEDICOSAM_TRAIN_EPOCHS", "7")
    from_env = Settings.from_conf({})
    assert (from_env.prefetch_radius, from_env.allow_download, from_env.training.epochs) == (3, False, 7)
    assert from_env.audit_dir == Path("/from/env/audit")

    conf = {"prefetch_radius": "5", "download": "yes", "cache_dir": "/from/conf", "train_epochs": "9"}
    from_conf = Settings.from_conf(conf)
    assert (from_conf.prefetch_radius, from_conf.allow_download, from_conf.training.epochs) == (5, True, 9)
    assert from_conf.audit_dir == Path("/from/conf/audit")

    # An empty conf value is not given, and MONAI Label's own keys in the conf are not ours.
    assert Settings.from_conf({"prefetch_radius": "", "models": "all", "preload": "true"}).prefetch_radius == 3


def test_a_bad_boolean_names_the_key(clean_env: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(InvalidRequestError, match="'--conf download / MEDICOSAM_DOWNLOAD' must be true or false"):
        Settings.from_conf({"download": "ture"})
    monkeypatch.setenv("MEDICOSAM_FUSED_ATTENTION", "maybe")
    with pytest.raises(InvalidRequestError, match="'--conf fused_attention / MEDICOSAM_FUSED_ATTENTION'"):
        Settings.from_conf({})
    monkeypatch.delenv("MEDICOSAM_FUSED_ATTENTION")
    with pytest.raises(InvalidRequestError, match="'warm_start' must be true or false"):
        Settings.from_conf({"train_warm_start": "sometimes"})


@pytest.mark.parametrize("key, text, error, message", [
    ("embedding_cache_mb", "lots", ValueError, "embedding_cache_mb must be an integer (got 'lots')"),
    ("window_level", "high", ValueError, "window_level must be a number (got 'high')"),
    ("pacs_retry_s", "-1", ValueError, "pacs_retry_s must be a whole number, 0 or more (got '-1')"),
    ("session_max_mb", "0", ValueError, "session_max_mb must be 1 or more (got '0')"),
    ("encode_batch_size", "2.5",
     ValueError, "encode_batch_size must be auto or a whole number of slices, at least 1 (got '2.5')"),
    ("viewer", "slicer", ValueError, "viewer must be one of medicosam, monailabel (got 'slicer')"),
    ("intensity", "gamma", ValueError, "intensity mode must be one of"),
    ("train_epochs", "many", InvalidRequestError, "Training option epochs='many' is not a valid int."),
    ("finetune_lora_rank", "0", InvalidRequestError, "Training option lora_rank=0 is out of range"),
])
def test_a_bad_value_names_the_key(clean_env: Path, monkeypatch: pytest.MonkeyPatch, key, text, error, message):
    with pytest.raises(error) as from_conf:
        Settings.from_conf({key: text})
    assert str(from_conf.value).startswith(message)
    monkeypatch.setenv(env_name(key), text)
    with pytest.raises(error) as from_env:
        Settings.from_conf({})
    assert str(from_env.value) == str(from_conf.value)


def test_a_value_of_another_type_names_the_key(clean_env: Path):
    with pytest.raises(ValueError, match="^checkpoint: Input should be a valid string"):
        Settings.from_conf({"checkpoint": ["a.pt", "b.pt"]})  # type: ignore[dict-item]


def test_every_key_is_described_briefly():
    for key, field in ConfigKeys.model_fields.items():
        assert field.description and len(field.description) <= 300, key
        assert "\n" not in field.description and "|" not in field.description, key


def test_the_docs_hold_the_printed_reference():
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MEDICOSAM_")}
    printed = subprocess.run([sys.executable, "-m", "medicosam_app", "config"], cwd=REPO, capture_output=True,
                             text=True, timeout=120, env=environment)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("| key | env | default | meaning |\n")
    assert len(re.findall(r"^\| `", printed.stdout, flags=re.M)) == len(ConfigKeys.model_fields)
    page = (REPO / "docs" / "configuration.md").read_text()
    assert page.count(BEGIN) == 1 and page.count(END) == 1, "docs/configuration.md needs one pair of config markers"
    documented = page.split(BEGIN, 1)[1].split(END, 1)[0]
    assert documented == printed.stdout, (
        "docs/configuration.md is out of date: paste the output of `python -m medicosam_app config` between "
        f"{BEGIN.strip()} and {END}")
