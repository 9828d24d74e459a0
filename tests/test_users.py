"""`tagwatch users`: accounts for the console, through the command line (engine.cli.main).

Passwords come from stdin and are stored as Argon2id hashes; API tokens are printed once
and stored only as their SHA-256; every account change is in the append-only access log."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.store.access.accounts import AccountStore
from engine.store.access.credentials import sha256, verify_password

GOOD = "correct horse battery"


def users(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(["users", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "tagwatch.db")


def rows(db: str, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


def test_add_list_and_the_hash_is_argon2id(capsys, monkeypatch, db: str) -> None:
    rc, out, _ = users(capsys, monkeypatch, "add", "alice", "--role", "monitor",
                       "--team", "north", "--db", db, stdin=GOOD + "\n")  # fmt: skip
    assert rc == 0 and "alice added (monitor, team north)" in out
    rc, out, _ = users(capsys, monkeypatch, "add", "root", "--role", "admin", "--db", db,
                       stdin=GOOD + "!\n")  # fmt: skip
    assert rc == 0
    rc, out, _ = users(capsys, monkeypatch, "list", "--db", db)
    assert out.splitlines() == ["alice\tmonitor\tnorth", "root\tadmin\t-"]
    ((stored,),) = rows(db, "SELECT password FROM users WHERE name = 'alice'")
    assert str(stored).startswith("$argon2id$") and GOOD not in str(stored)
    assert verify_password(str(stored), GOOD) and not verify_password(str(stored), GOOD + "x")
    assert GOOD.encode() not in Path(db).read_bytes()


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("", "the password is empty"),
        ("short", "too short (5 characters; at least 10)"),
        ("aaaaaaaaaaaa", "too easy to guess"),
        ("Alice12345", None),  # fine: 10 characters, not just the name
    ],
)
def test_weak_passwords_are_refused(capsys, monkeypatch, db: str, password: str, why) -> None:
    rc, _, err = users(capsys, monkeypatch, "add", "alice", "--role", "monitor", "--db", db,
                       stdin=password + "\n")  # fmt: skip
    if why is None:
        assert rc == 0, err
        return
    assert rc == 2 and "tagwatch: error: the password" in err and why in err
    with AccountStore(db) as store:
        assert store.users() == []


def test_bad_role_name_and_team_are_usage_errors(capsys, monkeypatch, db: str) -> None:
    for argv, said in [
        (["add", "bob", "--role", "boss"], "invalid choice: 'boss'"),
        (["add", "bob smith", "--role", "admin"], "a user name is 1-64 letters"),
        (["add", "bob", "--role", "admin", "--team", " "], "a team is 1-64 printable"),
    ]:
        with pytest.raises(SystemExit) as e:
            users(capsys, monkeypatch, *argv, "--db", db, stdin=GOOD + "\n")
        assert e.value.code == 2 and said in capsys.readouterr().err


def test_unknown_user_and_taken_name(capsys, monkeypatch, db: str) -> None:
    users(capsys, monkeypatch, "add", "alice", "--role", "monitor", "--db", db, stdin=GOOD)
    rc, _, err = users(capsys, monkeypatch, "add", "alice", "--role", "admin", "--db", db,
                       stdin=GOOD)  # fmt: skip
    assert rc == 2 and "user 'alice' already exists" in err
    for cmd in ("passwd", "token", "disable"):
        rc, _, err = users(capsys, monkeypatch, cmd, "carol", "--db", db, stdin=GOOD)
        assert rc == 2 and f"no user 'carol' in {db}" in err, cmd


def test_token_is_printed_once_and_stored_as_its_hash(capsys, monkeypatch, db: str) -> None:
    users(capsys, monkeypatch, "add", "api", "--role", "supervisor", "--db", db, stdin=GOOD)
    rc, out, err = users(capsys, monkeypatch, "token", "api", "--db", db)
    token = out.strip()
    assert rc == 0 and token.startswith("tw_") and len(token) > 40 and "Bearer" in err
    assert rows(db, "SELECT sha256, user FROM api_tokens") == [(sha256(token), "api")]
    assert token.encode() not in Path(db).read_bytes()
    with AccountStore(db) as store:
        user = store.by_token(sha256(token))
        assert user is not None and user.name == "api"


def test_passwd_and_disable(capsys, monkeypatch, db: str) -> None:
    users(capsys, monkeypatch, "add", "alice", "--role", "monitor", "--db", db, stdin=GOOD)
    _, token, _ = users(capsys, monkeypatch, "token", "alice", "--db", db)
    rc, _, err = users(capsys, monkeypatch, "passwd", "alice", "--db", db, stdin="x")
    assert rc == 2 and "too short" in err
    rc, _, _ = users(capsys, monkeypatch, "passwd", "alice", "--db", db, stdin="new horse staple")
    assert rc == 0
    with AccountStore(db) as store:
        got = store.password_of("alice")
        assert got is not None and verify_password(got[1], "new horse staple")
    rc, out, _ = users(capsys, monkeypatch, "disable", "alice", "--db", db)
    assert rc == 0
    _, out, _ = users(capsys, monkeypatch, "list", "--db", db)
    assert out == "alice\tmonitor\t- (disabled)\n"
    with AccountStore(db) as store:
        assert store.password_of("alice") is None  # no login
        assert store.by_token(sha256(token.strip())) is None  # no token
        actions = [r.action for r in store.access_log()]
    assert actions == ["user_add", "token_add", "user_passwd", "user_disable"]


def test_the_access_log_is_append_only(capsys, monkeypatch, db: str) -> None:
    users(capsys, monkeypatch, "add", "alice", "--role", "monitor", "--db", db, stdin=GOOD)
    with sqlite3.connect(db) as c:
        for sql in ("UPDATE access_log SET user = 'mallory'", "DELETE FROM access_log"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                c.execute(sql)
