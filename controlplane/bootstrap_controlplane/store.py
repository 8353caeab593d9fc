"""SQLite schema and queries. One file, WAL mode, so the CLI and a running server share it safely."""
import json
import sqlite3
import threading
from pathlib import Path

from .util import DB_NAME

SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    manifest TEXT NOT NULL,          -- normalised JSON: files with content_base64 or credential
    created TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS credentials (
    user TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    kid TEXT NOT NULL,
    envelope TEXT NOT NULL,          -- compact JWE; the plaintext never reaches this database
    created TEXT NOT NULL,
    PRIMARY KEY (user, name, version)
);
-- Token values are never stored: a token is known by its SHA-256 fingerprint only.
CREATE TABLE IF NOT EXISTS tokens (
    fingerprint TEXT PRIMARY KEY,
    jti TEXT NOT NULL,
    kid TEXT NOT NULL,
    profile TEXT NOT NULL,
    profile_version INTEGER NOT NULL,
    user TEXT NOT NULL,
    iat INTEGER NOT NULL,
    exp INTEGER NOT NULL,
    minted_by TEXT NOT NULL,
    redeemed_at INTEGER,
    machine_secret_hash TEXT,
    run_id TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL REFERENCES tokens(fingerprint),
    machine_secret_hash TEXT NOT NULL,
    machine TEXT NOT NULL,
    user TEXT NOT NULL,
    profile TEXT NOT NULL,
    profile_version INTEGER NOT NULL,
    client_address TEXT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_binding ON runs (machine_secret_hash);
CREATE TABLE IF NOT EXISTS run_tokens (
    fingerprint TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    kid TEXT NOT NULL,
    exp INTEGER NOT NULL
);
-- Enrollment keys (enrollment.py) mint tokens for one profile and user; stored as a fingerprint only.
CREATE TABLE IF NOT EXISTS enrollment_keys (
    key_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    profile TEXT NOT NULL,
    user TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    client_address TEXT,
    run_id TEXT,
    task TEXT,
    subject TEXT,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
-- The audit trail is append-only: the database itself refuses to change or drop a row.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only: DELETE refused'); END;
-- INSERT OR REPLACE removes a conflicting row without firing the DELETE trigger, so an insert
-- itself must extend the chain by exactly one: the next seq, the head's hash, a new id.
CREATE TRIGGER IF NOT EXISTS audit_append_only BEFORE INSERT ON audit
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit)
  OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), printf('%064d', 0))
  OR EXISTS (SELECT 1 FROM audit WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'audit is append-only: an insert must extend the chain'); END;
"""

# verify reports a trail whose guards were dropped: rows after the last signed checkpoint are
# protected by these alone.
AUDIT_TRIGGERS = ("audit_no_update", "audit_no_delete", "audit_append_only")


def connect(data_dir):
    path = Path(data_dir) / DB_NAME
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so writers queue instead of deadlocking.
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def create(data_dir):
    conn = connect(data_dir)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA)
    return conn


# Writers of one process queue on this lock before BEGIN IMMEDIATE. SQLite's busy handler sleeps
# and retries, so under load a waiting writer keeps losing to newcomers (the redeem p99 in bench/);
# a lock hands the database over in turn. Other processes (the CLI) still meet busy_timeout.
_WRITE_LOCK = threading.Lock()


class Transaction:
    """`with Transaction(conn):` = BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error). Not re-entrant."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        _WRITE_LOCK.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            _WRITE_LOCK.release()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            _WRITE_LOCK.release()
        return False


class ConnectionPool:
    """One connection per server thread (sqlite3 connections must not be shared mid-transaction)."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.local = threading.local()

    def get(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = connect(self.data_dir)
        return conn


# --- profiles -------------------------------------------------------------------------------

def latest_profile(conn, name):
    row = conn.execute(
        "SELECT name, version, manifest FROM profiles WHERE name=? ORDER BY version DESC LIMIT 1", (name,)
    ).fetchone()
    return _profile(row)


def profile_version(conn, name, version):
    row = conn.execute(
        "SELECT name, version, manifest FROM profiles WHERE name=? AND version=?", (name, version)
    ).fetchone()
    return _profile(row)


def _profile(row):
    if row is None:
        return None
    return {"name": row["name"], "version": row["version"], "files": json.loads(row["manifest"])["files"]}


def insert_profile(conn, name, version, files, created):
    conn.execute(
        "INSERT INTO profiles (name, version, manifest, created) VALUES (?, ?, ?, ?)",
        (name, version, json.dumps({"files": files}), created),
    )


# --- credentials ----------------------------------------------------------------------------

def latest_credential(conn, user, name):
    return conn.execute(
        "SELECT user, name, version, kid, envelope FROM credentials WHERE user=? AND name=? "
        "ORDER BY version DESC LIMIT 1",
        (user, name),
    ).fetchone()


def latest_credentials_of_user(conn, user):
    """The newest version of each of a user's credentials (what redeem and GET hand out)."""
    return conn.execute(
        "SELECT user, name, version, kid, envelope FROM credentials AS c WHERE user=? "
        "AND version = (SELECT MAX(version) FROM credentials WHERE user=c.user AND name=c.name) ORDER BY name",
        (user,),
    ).fetchall()


def credential_exists_for_other_user(conn, user, name):
    return conn.execute(
        "SELECT 1 FROM credentials WHERE name=? AND user<>? LIMIT 1", (name, user)
    ).fetchone() is not None


def insert_credential(conn, user, name, version, kid, envelope, created):
    conn.execute(
        "INSERT INTO credentials (user, name, version, kid, envelope, created) VALUES (?, ?, ?, ?, ?, ?)",
        (user, name, version, kid, envelope, created),
    )


# --- tokens and runs ------------------------------------------------------------------------

def insert_token(conn, row):
    conn.execute(
        "INSERT INTO tokens (fingerprint, jti, kid, profile, profile_version, user, iat, exp, minted_by) "
        "VALUES (:fingerprint, :jti, :kid, :profile, :profile_version, :user, :iat, :exp, :minted_by)",
        row,
    )


def token_row(conn, fp):
    return conn.execute("SELECT * FROM tokens WHERE fingerprint=?", (fp,)).fetchone()


def claim_token(conn, fp, now, not_expired_after, machine_secret_hash, run_id):
    """The single-use guarantee: one conditional UPDATE; the first redeem wins, everyone else sees 0 rows."""
    cur = conn.execute(
        "UPDATE tokens SET redeemed_at=?, machine_secret_hash=?, run_id=? "
        "WHERE fingerprint=? AND redeemed_at IS NULL AND exp >= ?",
        (now, machine_secret_hash, run_id, fp, not_expired_after),
    )
    return cur.rowcount == 1


def insert_run(conn, row):
    conn.execute(
        "INSERT INTO runs (run_id, fingerprint, machine_secret_hash, machine, user, profile, profile_version, "
        "client_address, started_at) VALUES (:run_id, :fingerprint, :machine_secret_hash, :machine, :user, "
        ":profile, :profile_version, :client_address, :started_at)",
        row,
    )


def run_row(conn, run_id):
    return conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()


def finish_run(conn, run_id, now):
    conn.execute("UPDATE runs SET finished_at=? WHERE run_id=? AND finished_at IS NULL", (now, run_id))


def insert_run_token(conn, fp, run_id, kid, exp):
    conn.execute("INSERT INTO run_tokens (fingerprint, run_id, kid, exp) VALUES (?, ?, ?, ?)", (fp, run_id, kid, exp))
