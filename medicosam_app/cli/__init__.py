"""The command line, ``python -m medicosam_app <command>``: one module per command, each with ``add_parser``
(registers its subcommand, ``set_defaults(run=run)``) and ``run(args) -> int`` (the exit code). Command
modules import their heavy dependencies inside ``run``, so ``--help`` starts fast."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from ..errors import MedicoSamError
from . import audit, config, evaluate, finetune, models, permissions, precompute, retrain, users

__all__ = ["build_parser", "main"]

DESCRIPTION = "``python -m medicosam_app <command>``: work for cron jobs and administrators, without the server."
COMMANDS = (precompute, retrain, evaluate, finetune, models, users, audit, permissions, config)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(prog="python -m medicosam_app", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command (``argv`` or the process's arguments); its exit code. A :class:`MedicoSamError` or a
    missing file ends it with one line on stderr and exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (MedicoSamError, FileNotFoundError) as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1
