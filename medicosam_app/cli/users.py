"""``python -m medicosam_app users``: add, list and remove the server's users, change a password or a role."""

from __future__ import annotations

import argparse
import sys

ROLES = ("annotator", "reviewer", "admin")  # security.users.Role's labels, without importing bcrypt for --help


def add_parser(commands: "argparse._SubParsersAction") -> None:
    users_file = argparse.ArgumentParser(add_help=False)
    users_file.add_argument("--users-file", help="the users file (default: $MEDICOSAM_USERS_FILE)")
    users = commands.add_parser(
        "users", help="add, list, remove users, change a password or a role (authentication is on with a users file)",
        description="Users of the server and their roles. Passwords are read from standard input (one line) "
        "when it is not a terminal, else asked twice. Exits 2 with one line on stderr when a name is taken, "
        "unknown or not allowed, or a role unknown.",
    )
    actions = users.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", parents=[users_file], help="add a user")
    add.add_argument("name", help="user name: letters, digits, '.', '_', '-'")
    add.add_argument("--role", required=True, choices=list(ROLES))
    listing = actions.add_parser("list", parents=[users_file], help="list users and roles")
    listing.add_argument("--json", action="store_true")
    actions.add_parser("remove", parents=[users_file], help="remove a user").add_argument("name")
    actions.add_parser("passwd", parents=[users_file], help="set a user's password").add_argument("name")
    set_role = actions.add_parser("set-role", parents=[users_file], help="change a user's role")
    set_role.add_argument("name")
    set_role.add_argument("role", metavar="ROLE", help=f"the new role: {', '.join(ROLES)}")
    users.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..security.users import UserError, UserStore
    from ..settings import Settings

    where = f"users {args.action}"
    users_file = Settings.from_conf({"users_file": args.users_file or ""}).users_file
    if users_file is None:
        print(f"{where}: no users file: pass --users-file PATH or set MEDICOSAM_USERS_FILE", file=sys.stderr)
        return 2
    store = UserStore(users_file)
    try:
        if args.action == "add":
            password = _read_new_password(args.name)
            user = store.add(args.name, password, args.role)
            print(f"Added {user.username} ({user.role.label}) to {store.path}.")
        elif args.action == "passwd":
            store.require(args.name)  # an unknown name fails before anyone types a password
            store.set_password(args.name, _read_new_password(args.name))
            print(f"New password for {args.name}; their earlier sign-ins no longer count.")
        elif args.action == "remove":
            store.remove(args.name)
            print(f"Removed {args.name} from {store.path}.")
        elif args.action == "set-role":
            user = store.set_role(args.name, args.role)
            print(f"{user.username} is now {user.role.label} in {store.path}.")
        else:
            users = store.list()
            if args.json:
                print(json.dumps([user.to_dict() for user in users], indent=2))
            elif not users:
                print(f"No users in {store.path}.")
            for user in users if not args.json else []:
                print(f"{user.username:<24} {user.role.label:<10} created {user.created}  "
                      f"password changed {user.password_changed}")
    except UserError as error:
        print(f"{where}: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print(f"\n{where}: cancelled; nothing was changed", file=sys.stderr)
        return 2
    return 0


def _read_new_password(username: str) -> str:
    """A new password: one line of standard input when it is not a terminal (scripts, tests), else typed
    twice at a prompt that does not echo."""
    import getpass

    from ..security.users import InvalidPasswordError, check_password

    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line.strip("\r\n"):
            raise InvalidPasswordError("no password on standard input: pipe one line, or run it in a terminal")
        return line.rstrip("\r\n")
    first = getpass.getpass(f"New password for {username}: ")
    check_password(first)  # say what is wrong before asking for the repeat
    if getpass.getpass("Repeat it: ") != first:
        raise InvalidPasswordError("the two passwords differ; nothing was changed")
    return first
