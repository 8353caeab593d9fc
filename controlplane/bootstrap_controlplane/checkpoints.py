"""Signed checkpoints of the audit chain head, with an Ed25519 key of their own.

Someone who can rewrite the database can recompute the hash chain, but cannot sign its new head: a
checkpoint names a seq and the chain hash there, signed with a key that never signs anything else.
A checkpoint is made at every run.finished and every CHECKPOINT_EVERY events (and on demand with
`bs-controlplane audit checkpoint`); `audit verify` checks each one and that none is missing.

Keys live in DATA/audit-keys/: KID.json {"kid", "alg", "public_key", "created", "retired_at"} (0644) for
every key ever used, and KID.pem (0600) for the current one only. Rotation deletes the retired private
key, so a later theft cannot forge checkpoints from before it; the public keys stay, for good, in that
folder and at GET /v1/audit/checkpoint-keys.
"""
import base64
import json
import os
import secrets
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .util import atomic_write, canonical_json, now_iso, write_new_file

CHECKPOINT_EVERY = 100
FORMAT = "bs-audit-checkpoint/1"
KEY_DIR = "audit-keys"

# Statements run one by one inside the caller's transaction (executescript would commit it).
TABLE = (
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, "
    "time TEXT NOT NULL, kid TEXT NOT NULL, signature TEXT NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints "
    "BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints "
    "BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE refused'); END",
    # INSERT OR REPLACE would swap a checkpoint without firing the DELETE trigger.
    "CREATE TRIGGER IF NOT EXISTS audit_checkpoints_append_only BEFORE INSERT ON audit_checkpoints "
    "WHEN NEW.seq <= (SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints) "
    "BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: an insert must come after the last'); END",
)


def key_dir(data_dir):
    return Path(data_dir) / KEY_DIR


def _b64(raw):
    return base64.b64encode(raw).decode("ascii")


def generate_key(data_dir):
    directory = key_dir(data_dir)
    directory.mkdir(mode=0o700, exist_ok=True)
    kid = "ck-" + time.strftime("%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(6)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_new_file(directory / f"{kid}.pem", pem, 0o600)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    meta = {"kid": kid, "alg": "Ed25519", "public_key": _b64(public), "created": int(time.time()), "retired_at": None}
    # The .json appears last: a key signs only once both files exist.
    atomic_write(directory / f"{kid}.json", json.dumps(meta, indent=1), 0o644)
    return kid


def public_keys(data_dir):
    """Every checkpoint key ever used, oldest first (public parts only)."""
    directory = key_dir(data_dir)
    if not directory.is_dir():
        return []
    metas = [json.loads(p.read_text()) for p in directory.glob("*.json") if not p.name.startswith(".")]
    # Retired keys first: two keys made within the same second would otherwise sort by their random kid.
    return sorted(metas, key=lambda m: (m["retired_at"] is None, m["created"], m["kid"]))


def current_key(data_dir):
    """(kid, private key) of the signing key, created on first use."""
    live = [m for m in public_keys(data_dir) if m["retired_at"] is None]
    kid = live[-1]["kid"] if live else generate_key(data_dir)
    pem = (key_dir(data_dir) / f"{kid}.pem").read_bytes()
    return kid, serialization.load_pem_private_key(pem, password=None)


def rotate(data_dir):
    """A new signing key; the old ones are retired and their private halves destroyed."""
    old = [m for m in public_keys(data_dir) if m["retired_at"] is None]
    kid = generate_key(data_dir)
    for meta in old:
        meta["retired_at"] = int(time.time())
        atomic_write(key_dir(data_dir) / f"{meta['kid']}.json", json.dumps(meta, indent=1), 0o644)
        try:
            os.unlink(key_dir(data_dir) / f"{meta['kid']}.pem")
        except FileNotFoundError:
            pass
    return kid, [m["kid"] for m in old]


def signed_payload(checkpoint):
    return canonical_json({"format": FORMAT, "seq": checkpoint["seq"], "hash": checkpoint["hash"],
                           "time": checkpoint["time"], "kid": checkpoint["kid"]}).encode("ascii")


def data_dir_of(conn):
    """The data dir of a connection to DATA/controlplane.db."""
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main":
            return Path(row[2]).parent
    raise RuntimeError("the connection has no main database")


def record(conn, seq, chain_hash):
    """Sign the chain head at seq and store the checkpoint (inside the caller's transaction)."""
    ensure_table(conn)
    kid, key = current_key(data_dir_of(conn))
    checkpoint = {"seq": seq, "hash": chain_hash, "time": now_iso(), "kid": kid}
    checkpoint["signature"] = _b64(key.sign(signed_payload(checkpoint)))
    conn.execute("INSERT INTO audit_checkpoints (seq, hash, time, kid, signature) VALUES (?, ?, ?, ?, ?)",
                 (seq, chain_hash, checkpoint["time"], kid, checkpoint["signature"]))
    return checkpoint


def ensure_table(conn):
    for statement in TABLE:
        conn.execute(statement)


def stored(conn):
    """Every stored checkpoint by seq; none for a database from before checkpoints existed."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit_checkpoints'").fetchone()
    if not exists:
        return []
    return [dict(zip(("seq", "hash", "time", "kid", "signature"), row)) for row in
            conn.execute("SELECT seq, hash, time, kid, signature FROM audit_checkpoints ORDER BY seq")]


def signature_problem(checkpoint, keys):
    """Why a checkpoint's signature cannot be trusted with these public keys, or None."""
    meta = keys.get(checkpoint.get("kid"))
    if meta is None:
        return f"signed with key {checkpoint.get('kid')!r}, which is not a published checkpoint key"
    try:
        public = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(meta["public_key"]))
        public.verify(base64.b64decode(checkpoint["signature"]), signed_payload(checkpoint))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return f"its signature does not verify with key {meta['kid']}"
    return None
