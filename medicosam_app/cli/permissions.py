"""``python -m medicosam_app permissions``: print the role each route needs, as a Markdown table."""

from __future__ import annotations

import argparse


def add_parser(commands: "argparse._SubParsersAction") -> None:
    perm = commands.add_parser("permissions", help="print the role each route needs (Markdown table)")
    perm.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..security.permissions import markdown_table

    print(markdown_table(), end="")
    return 0
