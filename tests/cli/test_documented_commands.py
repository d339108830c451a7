"""Every ``python -m medicosam_app`` command the README and docs/ show is one the command line takes, with the flags
shown; the light ones are run for real; the README's table of keys names real keys with their real defaults.

The heavy commands (precompute, retrain, finetune, evaluate) are run end to end by their own tests
(tests/embeddings/test_precompute.py, tests/cli/test_retrain_command.py, tests/finetune/, tests/evaluation/);
here their documented spellings are parsed by the same parser the command line uses, so a renamed flag or command
fails here, naming the page and the line.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from medicosam_app.cli import build_parser
from medicosam_app.settings.reference import markdown_table

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"python -m medicosam_app ([^`\n]*)")
# What the pages write for a value the reader fills in.
PLACEHOLDERS = {"DIR": "sample-data/datastore", "URL": "http://127.0.0.1:8042/dicom-web", "N": "2", "U": "alice",
                "ID": "ct_1", "PATH": "/tmp/file", "DIR|URL": "sample-data/datastore"}


def _spellings(text: str) -> Iterator[List[str]]:
    """The argument lists one documented command stands for: ``[--opt X]`` once left out and once given,
    ``a|b|c`` each alternative, placeholders filled in."""
    text = text.split("  #")[0].split(" # ")[0].strip().rstrip(";,.")
    text = text.replace("\\|", "|")
    optional = re.findall(r"\[([^\]]+)\]", text)
    bare = re.sub(r"\s*\[[^\]]+\]", "", text)
    for variant in (bare, re.sub(r"\[([^\]]+)\]", r"\1", text)) if optional else (bare,):
        words = shlex.split(variant)
        choices = [PLACEHOLDERS.get(w, w).split("|") if w not in PLACEHOLDERS else [PLACEHOLDERS[w]] for w in words]
        for n in range(max(len(c) for c in choices) if choices else 0):
            yield [c[min(n, len(c) - 1)] for c in choices]


def _documented() -> List[Tuple[str, str]]:
    found = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for match in COMMAND.finditer(line):
                if match.group(1).strip() not in ("", "…", "..."):
                    found.append((f"{page.relative_to(REPO)}:{number}", match.group(1)))
    return found


def _readme_command_table() -> List[Tuple[str, str]]:
    """The README's table of commands: its first column, as ``python -m medicosam_app`` takes it (a row naming a
    command's subcommands, ``users add|list|...``, is checked name by name)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \|", section, re.M)
    return [(f"README.md (commands table): {row}", row) for row in rows]


DOCUMENTED = _documented() + _readme_command_table()


def test_the_pages_show_commands_at_all():
    assert len(DOCUMENTED) >= 20, DOCUMENTED
    shown = {text.split()[0] for _, text in DOCUMENTED}
    assert shown >= {"precompute", "retrain", "finetune", "evaluate", "models", "users", "audit", "permissions",
                     "config"}


@pytest.mark.parametrize("where, text", DOCUMENTED, ids=[where for where, _ in DOCUMENTED])
def test_each_documented_command_is_taken_by_the_command_line(where, text):
    for argv in _spellings(text):
        if "commands table" in where and len(argv) == 2 and argv[1] in _subcommands(argv[0]):
            continue  # a subcommand named in the table, its arguments left to --help
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `python -m medicosam_app {' '.join(argv)}` is not taken by the command line")
        assert callable(args.run), where


def _subcommands(command: str) -> List[str]:
    """The subcommands ``python -m medicosam_app <command>`` takes (none for a command without them)."""
    top = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    parser = top.choices.get(command)
    if parser is None:
        return []
    nested = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return list(nested[0].choices) if nested else []


def _run(*argv: str, env_home: Path, stdin: str = "") -> subprocess.CompletedProcess:
    env = {"HOME": str(env_home), "PATH": "/usr/bin:/bin", "MEDICOSAM_CACHE_DIR": str(env_home / "cache")}
    return subprocess.run([sys.executable, "-m", "medicosam_app", *argv], cwd=REPO, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_the_light_commands_run_as_documented(tmp_path):
    users = tmp_path / "users.json"
    added = _run("users", "add", "alice", "--role", "annotator", "--users-file", str(users),
                 env_home=tmp_path, stdin="a long enough password\n")
    assert added.returncode == 0, added.stderr
    listed = _run("users", "list", "--users-file", str(users), env_home=tmp_path)
    assert listed.returncode == 0 and "alice" in listed.stdout and "annotator" in listed.stdout
    models = _run("models", "list", env_home=tmp_path)
    assert models.returncode == 0, models.stderr
    audit = _run("audit", "--since", "2026-11-01", "--event", "infer", env_home=tmp_path)
    assert audit.returncode == 0, audit.stderr
    for command in ("config", "permissions"):
        printed = _run(command, env_home=tmp_path)
        assert printed.returncode == 0 and printed.stdout.startswith("| "), printed.stderr


def test_the_readme_keys_are_real_keys_with_their_real_defaults():
    reference = {}
    for row in markdown_table().splitlines()[2:]:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        reference[cells[0].strip("`")] = cells[2].replace("`", "")
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## The keys people change", 1)[1]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", section.split("\n## ", 1)[0], re.M)
    assert len(rows) == 10, rows
    for key, default in rows:
        assert key in reference, f"README names the key {key!r}, which `python -m medicosam_app config` does not list"
        shown = default.strip().replace("`", "")
        assert reference[key].startswith(shown), f"README gives {key} the default {shown!r}; the model: {reference[key]!r}"
