"""``python -m medicosam_app config``: print every configuration key (its environment variable, default and
meaning) as a Markdown table, generated from the settings model; docs/configuration.md holds the same table."""

from __future__ import annotations

import argparse


def add_parser(commands: "argparse._SubParsersAction") -> None:
    conf = commands.add_parser("config", help="print every configuration key, its environment variable, default "
                               "and meaning (Markdown table)")
    conf.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..settings.reference import markdown_table

    print(markdown_table(), end="")
    return 0
