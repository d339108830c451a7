"""Flags that several commands share: the model settings and the semantic model's folders and classes."""

from __future__ import annotations

import argparse
from typing import Dict


def settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the settings flags (checkpoint, caches, intensity, precision, device); each one left out falls back
    to the MEDICOSAM_* environment, as the server reads it. :func:`settings_conf` turns them into a conf."""
    group = parser.add_argument_group("settings (default: the MEDICOSAM_* environment, as the server reads it)")
    group.add_argument("--checkpoint", help="MedicoSAM checkpoint file")
    group.add_argument("--cache-dir", help="weights and embedding cache folder (default ~/.cache/medicosam)")
    group.add_argument("--embedding-disk-dir", help="embedding cache folder (default <cache-dir>/embeddings)")
    group.add_argument("--intensity", choices=["volume", "slice", "percentile", "window"])
    group.add_argument("--window-level", type=float)
    group.add_argument("--window-width", type=float)
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"])
    group.add_argument("--device", help="cpu, cuda, cuda:1 ...")
    group.add_argument("--no-download", action="store_true", help="never download the published weights")


def settings_conf(args: argparse.Namespace) -> Dict[str, str]:
    """The flags of :func:`settings_arguments` that were given, as a conf for ``Settings.from_conf``."""
    keys = ["checkpoint", "cache_dir", "embedding_disk_dir", "intensity", "window_level", "window_width", "precision", "device"]
    conf = {key: str(getattr(args, key)) for key in keys if getattr(args, key) is not None}
    if args.no_download:
        conf["download"] = "false"
    return conf


def semantic_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the semantic model's flags: its versions folder and its classes."""
    group = parser.add_argument_group("semantic model")
    group.add_argument("--semantic-dir", help="versions of the semantic decoder (default <cache-dir>/semantic)")
    group.add_argument("--labels", help="classes: 'liver,spleen' or JSON {\"liver\": 1} (default: the server's)")


def semantic_conf(args: argparse.Namespace) -> Dict[str, str]:
    """The conf for ``Settings.from_conf`` of a command with :func:`semantic_arguments`: the settings flags
    when the command has them, plus the model folders, classes and cache folder that were given."""
    conf = settings_conf(args) if hasattr(args, "checkpoint") else {}
    for key in ("semantic_dir", "interactive_dir", "labels", "cache_dir"):
        if getattr(args, key, None):
            conf[key] = str(getattr(args, key))
    return conf
