"""The access tables: accounts, API tokens, console sessions and the append-only access log.

They live in the alert store's file (one file to back up, one 0600 mode), or PostgreSQL's
common schema `tagwatch`, but are written on a connection of their own (engine/store/access/accounts.py): the engine's writer never
waits on a console request's read. Only hashes of secrets are stored: a copy of the file
gives nobody a password, a token or a live session."""

from __future__ import annotations

ROLES = ("monitor", "supervisor", "admin")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('monitor', 'supervisor', 'admin')),
    team TEXT,
    password TEXT NOT NULL,          -- Argon2id PHC string ($argon2id$v=19$...)
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    changed_at REAL NOT NULL
);
-- API tokens: SHA-256 of the token (it has 256 random bits: no salt or stretching needed).
CREATE TABLE IF NOT EXISTS api_tokens (
    sha256 TEXT PRIMARY KEY,
    "user" TEXT NOT NULL REFERENCES users(name),
    created_at REAL NOT NULL
);
-- Console sessions: SHA-256 of the cookie's value, the CSRF token the session's pages send.
CREATE TABLE IF NOT EXISTS sessions (
    sha256 TEXT PRIMARY KEY,
    "user" TEXT NOT NULL REFERENCES users(name),
    csrf TEXT NOT NULL,
    client TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions("user");
-- Who did what, when, from where: logins, failed logins, logouts, account changes.
-- Evidence: rows are only ever appended (the triggers refuse UPDATE and DELETE).
CREATE TABLE IF NOT EXISTS access_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    t REAL NOT NULL,
    "user" TEXT NOT NULL,            -- the name given, known or not
    client TEXT NOT NULL,            -- the client's address, or "cli" for the command line
    action TEXT NOT NULL,            -- login, login_failed, login_limited, logout, user_add...
    detail TEXT NOT NULL DEFAULT ''
);
"""
# The access log refuses UPDATE and DELETE, in each database's words.
APPEND_ONLY = {
    "sqlite": """
CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
""",
    "postgresql": """
CREATE OR REPLACE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'the access log is append-only'; END $$;
CREATE OR REPLACE TRIGGER access_log_no_change BEFORE UPDATE OR DELETE ON access_log
FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
""",
}
