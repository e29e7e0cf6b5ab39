# -*- test-case-name: tests.test_daemon_state -*-
"""
Root's own state: one SQLite database under C{/var/lib/lecp} (0600), created and migrated by the
daemon. Per certificate: attempts, backoff, last error, mails sent, ARI windows; deferred orders
seen; events for the admin's summary; the last scan.
"""

from __future__ import annotations

import os
import sqlite3

import attrs

SCHEMA_VERSION = 1
_MIGRATIONS = {
    1: [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
        """CREATE TABLE certs (
            user TEXT NOT NULL, vhost TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, last_attempt REAL, last_error TEXT NOT NULL DEFAULT '',
            error_type TEXT NOT NULL DEFAULT '', next_attempt REAL NOT NULL DEFAULT 0, last_success REAL,
            last_failure_mail REAL, last_alert REAL, ari_pick REAL, ari_next_check REAL, ari_explanation TEXT,
            PRIMARY KEY (user, vhost))""",
        """CREATE TABLE pending (
            user TEXT NOT NULL, vhost TEXT NOT NULL, order_url TEXT NOT NULL, next_attempt REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (user, vhost))""",
        "CREATE TABLE events (time REAL NOT NULL, user TEXT NOT NULL, vhost TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT)",
        "CREATE INDEX events_time ON events (time)",
    ],
}


@attrs.define
class CertState:
    """What root remembers about one certificate between passes."""

    user: str
    vhost: str
    attempts: int = 0
    last_attempt: float | None = None
    last_error: str = ""
    error_type: str = ""
    next_attempt: float = 0.0
    last_success: float | None = None
    last_failure_mail: float | None = None
    last_alert: float | None = None
    ari_pick: float | None = None
    ari_next_check: float | None = None
    ari_explanation: str | None = None


_CERT_COLUMNS = [a.name for a in attrs.fields(CertState)]


class State:
    """The database; every method is one short transaction."""

    def __init__(self, path: str):
        self.path = path
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} was written by a newer lecp (schema {version}); upgrade lecp")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.db:
                self.db.execute("BEGIN")
                for statement in _MIGRATIONS[target]:
                    if statement.startswith("CREATE TABLE meta"):
                        continue
                    self.db.execute(statement)
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(target),))

    def close(self) -> None:
        self.db.close()

    # meta

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    # certificates

    def all_certs(self) -> dict[tuple[str, str], CertState]:
        """Every certificate's state, by (user, vhost): loaded once per pass."""
        rows = self.db.execute(f"SELECT {', '.join(_CERT_COLUMNS)} FROM certs").fetchall()
        return {(r[0], r[1]): CertState(*r) for r in rows}

    def cert(self, user: str, vhost: str) -> CertState:
        row = self.db.execute(f"SELECT {', '.join(_CERT_COLUMNS)} FROM certs WHERE user = ? AND vhost = ?",
                              (user, vhost)).fetchone()
        return CertState(*row) if row else CertState(user, vhost)

    def save_cert(self, state: CertState) -> None:
        values = [getattr(state, c) for c in _CERT_COLUMNS]
        self.db.execute(f"INSERT OR REPLACE INTO certs ({', '.join(_CERT_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
                        values)

    def forget_cert(self, user: str, vhost: str) -> None:
        self.db.execute("DELETE FROM certs WHERE user = ? AND vhost = ?", (user, vhost))

    # deferred orders

    def pending(self) -> list[tuple[str, str, str, float]]:
        return self.db.execute("SELECT user, vhost, order_url, next_attempt FROM pending").fetchall()

    def set_pending(self, user: str, vhost: str, order_url: str, next_attempt: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?)", (user, vhost, order_url, next_attempt))

    def clear_pending(self, user: str, vhost: str) -> None:
        self.db.execute("DELETE FROM pending WHERE user = ? AND vhost = ?", (user, vhost))

    # events for the admin's summary

    def add_event(self, time: float, user: str, vhost: str, kind: str, detail: str = "") -> None:
        self.db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", (time, user, vhost, kind, detail))

    def events_since(self, since: float) -> list[tuple]:
        return self.db.execute("SELECT time, user, vhost, kind, detail FROM events WHERE time >= ? ORDER BY time",
                               (since,)).fetchall()

    def prune_events(self, before: float) -> None:
        self.db.execute("DELETE FROM events WHERE time < ?", (before,))


def read_states(path: str) -> dict[tuple[str, str], CertState]:
    """Every certificate's state from the database at C{path}, opened read-only (empty when there is none yet)."""
    if not os.path.exists(path):
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(f"SELECT {', '.join(_CERT_COLUMNS)} FROM certs").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    return {(r[0], r[1]): CertState(*r) for r in rows}
