"""`tagwatch users`: the console's accounts, kept in the alert store's file.

    tagwatch users add NAME --role monitor|supervisor|admin --db D [--team T]  (password: stdin)
    tagwatch users passwd NAME --db D     (new password: stdin; ends the user's sessions)
    tagwatch users token NAME --db D      (prints a new API token; only its hash is kept)
    tagwatch users disable NAME --db D    (no login, session or token works any more)
    tagwatch users list --db D

The password is read from stdin (one line; a terminal is asked twice, without echo), never
from an argument: arguments show in `ps` and in shell history."""

from __future__ import annotations

import argparse
import getpass
import re
import sys

from engine.store.access.accounts import AccountError, AccountStore
from engine.store.access.schema import ROLES
from engine.store.sql.conn import describe
from zones.subjects import TEAM_MAX, team_ok

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def _name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a user name is 1-64 letters, digits, '.', '_', '@' or '-'"
            " (starting with a letter or digit)"
        )
    return text


def _team(text: str) -> str:
    if not team_ok(text):
        raise argparse.ArgumentTypeError(f"{text!r}: a team is 1-{TEAM_MAX} printable characters")
    return text


def _password(name: str) -> str:
    """One line from stdin; on a terminal asked twice without echo."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise AccountError("the two passwords differ; nothing changed")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    from engine.store.access.credentials import check_new_password

    check_new_password(name, password)
    return password


# engine.store.access.credentials is imported where it is used: importing it hashes a
# dummy password (Argon2id, ~0.1-0.2 s), which every other command would pay at start-up


def cmd_add(args: argparse.Namespace) -> int:
    from engine.store.access.credentials import hash_password

    password = _password(args.name)
    with AccountStore(args.db) as store:
        user = store.add_user(args.name, args.role, args.team, hash_password(password))
    team = f", team {user.team}" if user.team else ""
    print(f"user {user.name} added ({user.role}{team}) to {describe(args.db)}")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    from engine.store.access.credentials import hash_password

    with AccountStore(args.db) as store:
        if not any(u.name == args.name for u in store.users()):
            raise AccountError(f"no user {args.name!r} in {describe(args.db)}")
        store.set_password(args.name, hash_password(_password(args.name)))
    print(f"password of {args.name} changed; their console sessions have ended")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from engine.store.access.credentials import new_token, sha256

    token = new_token()
    with AccountStore(args.db) as store:
        store.add_token(args.name, sha256(token))
    print(token)  # alone on stdout: `TOKEN=$(tagwatch users token ...)`
    print(
        f"API token for {args.name}: send it as 'Authorization: Bearer TOKEN'. It is shown"
        " only now; `tagwatch users disable` revokes it",
        file=sys.stderr,
    )
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    with AccountStore(args.db) as store:
        store.disable(args.name)
    print(f"user {args.name} disabled: no login, session or API token of theirs works")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with AccountStore(args.db) as store:
        users = store.users()
    for u in users:
        state = " (disabled)" if u.disabled else ""
        print(f"{u.name}\t{u.role}\t{u.team or '-'}{state}")
    if not users:
        print(
            f"no users in {describe(args.db)}: add one with `tagwatch users add`", file=sys.stderr
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sp = sub.add_parser("users", help="console accounts: add, passwd, token, disable, list")
    usub = sp.add_subparsers(dest="users_cmd", required=True, metavar="command")

    def one(name: str, help: str) -> argparse.ArgumentParser:
        p = usub.add_parser(name, help=help)
        if name != "list":
            p.add_argument("name", type=_name, help="user name")
        p.add_argument(
            "--db",
            default="tagwatch.db",
            help="alert store: a file or a postgresql:// URL (default %(default)s)",
        )
        return p

    a = one("add", "add a user; the password is read from stdin")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--team", type=_team, help="the team whose subjects a monitor works")
    a.set_defaults(func=cmd_add)
    one("passwd", "set a new password (stdin); ends the user's sessions").set_defaults(
        func=cmd_passwd
    )
    one("token", "print a new API token for the user").set_defaults(func=cmd_token)
    one("disable", "disable a user: logins, sessions and tokens stop").set_defaults(
        func=cmd_disable
    )
    one("list", "list the users").set_defaults(func=cmd_list)
