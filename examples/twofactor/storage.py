"""The host's own tables in SQLite: users, the devices it trusted, and sign-in sessions.

This is everything a host keeps for two-factor login with otpserver (SPEC §13-§15):

- on the user row, the password hash (Argon2id), the sealed TOTP `enrolment`, the sealed
  backup-code `set` and the `device_generation` that revokes every trusted device at once;
- one row per device it trusted (`deviceId`, expiry, a label), to list and revoke them.

The blobs are sealed by the server and bound to the user's id (the `subject`): they are
useless to anyone who reads this database without the server's master key. The TOTP secret
and the backup codes themselves are never stored here.

Sessions are ordinary server-side sessions: the cookie holds a random token and the table
holds only its SHA-256, so a copy of the table signs no one in.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,              -- the `subject` otpserver sees: random, never the email
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,      -- Argon2id, from argon2-cffi
    totp_enrolment TEXT,              -- sealed blob from /v1/totp/enrolments/confirm
    backup_codes TEXT,                -- sealed set from /v1/backup-codes
    device_generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS trusted_devices (
    device_id TEXT PRIMARY KEY,       -- `deviceId` from /v1/devices/trust
    user_id TEXT NOT NULL REFERENCES users(id),
    label TEXT NOT NULL,
    trusted_at INTEGER NOT NULL,
    expires TEXT NOT NULL             -- `expires`, ISO 8601 UTC
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    user_id TEXT REFERENCES users(id),
    stage TEXT NOT NULL,              -- anonymous, second-factor-due, signed-in
    csrf TEXT NOT NULL,
    data TEXT NOT NULL,               -- JSON: the pending challenge or enrolment token
    created_at REAL NOT NULL
);
"""

ANONYMOUS = "anonymous"
SECOND_FACTOR_DUE = "second-factor-due"
SIGNED_IN = "signed-in"
SESSION_SECONDS = {ANONYMOUS: 3600, SECOND_FACTOR_DUE: 600, SIGNED_IN: 8 * 3600}
"""How long a session lasts in each stage: the second factor must follow the password soon."""


@dataclass(frozen=True, slots=True)
class User:
    """A user row."""

    id: str
    email: str
    password_hash: str
    totp_enrolment: str | None
    backup_codes: str | None
    device_generation: int


@dataclass(frozen=True, slots=True)
class Device:
    """A device this host trusted for a user."""

    device_id: str
    label: str
    trusted_at: int
    expires: str


@dataclass(slots=True)
class Session:
    """A browser's session. `token` is the cookie value; only its hash is stored."""

    token: str
    user_id: str | None
    stage: str
    csrf: str
    data: dict[str, Any] = field(default_factory=dict)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Storage:
    """The host's database. sqlite3 calls are short local-file operations, so the app makes
    them directly; a larger app would use its own database layer here."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # Users

    def add_user(self, email: str, password_hash: str) -> User | None:
        """A new user, or None when the email is taken."""
        user_id = "u_" + secrets.token_hex(12)
        try:
            self._db.execute(
                "INSERT INTO users (id, email, password_hash) VALUES (?, ?, ?)",
                (user_id, email, password_hash),
            )
        except sqlite3.IntegrityError:
            return None
        return self.user(user_id)

    def user(self, user_id: str) -> User | None:
        row = self._db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        return None if row is None else User(**dict(row))

    def user_by_email(self, email: str) -> User | None:
        row = self._db.execute("SELECT * FROM users WHERE email = ?", (email,)).fetchone()
        return None if row is None else User(**dict(row))

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        self._db.execute(
            "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
        )

    def set_totp_enrolment(self, user_id: str, enrolment: str) -> None:
        self._db.execute("UPDATE users SET totp_enrolment = ? WHERE id = ?", (enrolment, user_id))

    def set_backup_codes(self, user_id: str, backup_set: str) -> None:
        self._db.execute("UPDATE users SET backup_codes = ? WHERE id = ?", (backup_set, user_id))

    def raise_device_generation(self, user_id: str) -> None:
        """Every device trusted before now stops being trusted, whatever the server keeps."""
        self._db.execute(
            "UPDATE users SET device_generation = device_generation + 1 WHERE id = ?", (user_id,)
        )
        self._db.execute("DELETE FROM trusted_devices WHERE user_id = ?", (user_id,))

    # Trusted devices

    def add_device(self, user_id: str, device_id: str, label: str, expires: str) -> None:
        self._db.execute(
            "INSERT INTO trusted_devices (device_id, user_id, label, trusted_at, expires)"
            " VALUES (?, ?, ?, ?, ?)",
            (device_id, user_id, label, int(time.time()), expires),
        )

    def devices(self, user_id: str) -> list[Device]:
        """The user's devices that have not expired, newest first."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        rows = self._db.execute(
            "SELECT device_id, label, trusted_at, expires FROM trusted_devices"
            " WHERE user_id = ? AND expires > ? ORDER BY trusted_at DESC, rowid DESC",
            (user_id, now),
        ).fetchall()
        return [Device(**dict(row)) for row in rows]

    def remove_device(self, user_id: str, device_id: str) -> None:
        """Forget one of the user's devices."""
        self._db.execute(
            "DELETE FROM trusted_devices WHERE user_id = ? AND device_id = ?",
            (user_id, device_id),
        )

    # Sessions

    def new_session(self, user_id: str | None = None, stage: str = ANONYMOUS) -> Session:
        """A fresh session with a new token: used at every change of who is signed in, so a
        token set before sign-in (session fixation) never becomes a signed-in one."""
        self._db.execute(
            "DELETE FROM sessions WHERE created_at < ?",
            (time.time() - max(SESSION_SECONDS.values()),),
        )
        session = Session(secrets.token_urlsafe(32), user_id, stage, secrets.token_urlsafe(32))
        self._db.execute(
            "INSERT INTO sessions (token_hash, user_id, stage, csrf, data, created_at)"
            " VALUES (?, ?, ?, ?, '{}', ?)",
            (_hash(session.token), user_id, stage, session.csrf, time.time()),
        )
        return session

    def session(self, token: str) -> Session | None:
        """The session of a cookie value, unless unknown or past its stage's lifetime."""
        row = self._db.execute(
            "SELECT * FROM sessions WHERE token_hash = ?", (_hash(token),)
        ).fetchone()
        if row is None:
            return None
        if time.time() - row["created_at"] > SESSION_SECONDS[row["stage"]]:
            self.end_session(token)
            return None
        return Session(token, row["user_id"], row["stage"], row["csrf"], json.loads(row["data"]))

    def save_session(self, session: Session) -> None:
        self._db.execute(
            "UPDATE sessions SET data = ? WHERE token_hash = ?",
            (json.dumps(session.data), _hash(session.token)),
        )

    def end_session(self, token: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (_hash(token),))
