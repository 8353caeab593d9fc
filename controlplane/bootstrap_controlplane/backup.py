"""Encrypted backups of a data dir (database, audit chain and checkpoints, keys), verified on restore.

A backup file is MAGIC, one JSON header line, then AES-256-GCM ciphertext of a tar.gz; the header is
the associated data, so neither part can be changed unnoticed. The key is 32 random bytes in a key
file (base64url): by default DATA/backup.key, created by the first backup; `--key-file` or
BOOTSTRAP_SAAS_BACKUP_KEY_FILE point elsewhere. Keep a copy of it apart from the backups: restore needs
it, and whoever holds a backup and its key holds everything the data dir holds.
"""
import base64
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import audit, checkpoints, store
from .util import DB_NAME, now_iso, write_new_file

MAGIC = b"BSBACKUP\x01\n"
FORMAT = "bootstrap-saas-backup/1"
SUFFIX = ".bsbackup"
KEY_NAME = "backup.key"
KEY_ENV = "BOOTSTRAP_SAAS_BACKUP_KEY_FILE"
KEEP_SECONDS = 7 * 86400
MANIFEST = "backup-manifest.json"
# Runtime state and the live database files (a consistent snapshot of the database goes in instead).
SKIPPED = {"server.json", DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-journal"}


class BackupError(Exception):
    pass


def _b64u(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def key_id(key):
    return "bk-" + hashlib.sha256(key).hexdigest()[:16]


def read_key(path):
    try:
        text = Path(path).read_text().strip()
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read the backup key {path}: {exc}")
    if len(key) != 32:
        raise BackupError(f"{path} does not hold a backup key (32 bytes, base64url)")
    return key


def key_path(data_dir, given):
    """The key file: --key-file, else the environment, else DATA/backup.key."""
    return Path(given or os.environ.get(KEY_ENV) or Path(data_dir) / KEY_NAME)


def ensure_key(path):
    """The key in path, created (0600) when missing. Returns (key, created)."""
    path = Path(path)
    if path.exists():
        return read_key(path), False
    write_new_file(path, _b64u(secrets.token_bytes(32)) + "\n", 0o600)
    return read_key(path), True


def _files(data_dir):
    for path in sorted(Path(data_dir).rglob("*")):
        rel = path.relative_to(data_dir).as_posix()
        if path.is_file() and not path.is_symlink() and rel not in SKIPPED and not path.name.startswith(".tmp-") \
                and not rel.endswith(".log"):
            yield rel, path


def _snapshot_db(data_dir, into):
    """A consistent copy of the database, taken with SQLite's backup API (safe while the server runs)."""
    source = store.connect(data_dir)
    target = sqlite3.connect(str(into))
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def create(data_dir, out, key_file=None):
    """Write an encrypted backup of data_dir to out. Returns a dict describing it."""
    data_dir, out = Path(data_dir), Path(out)
    if out.exists():
        raise BackupError(f"{out} exists already; refusing to overwrite a backup")
    path = key_path(data_dir, key_file)
    key, created = ensure_key(path)
    with tempfile.TemporaryDirectory(prefix="bs-backup-") as tmp:
        snapshot = Path(tmp) / DB_NAME
        _snapshot_db(data_dir, snapshot)
        conn = store.connect(tmp)
        conn.row_factory = sqlite3.Row
        report = audit.verify(conn, keys=checkpoints.public_keys(data_dir))
        conn.close()
        members = [(DB_NAME, snapshot)] + list(_files(data_dir))
        manifest = {"format": FORMAT, "created": now_iso(), "events": report.total,
                    "head": list(report.head) if report.head else None,
                    "files": {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in members}}
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for rel, p in [(MANIFEST, None)] + members:
                data = json.dumps(manifest, indent=1).encode() if p is None else p.read_bytes()
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
                tar.addfile(info, io.BytesIO(data))
    nonce = secrets.token_bytes(12)
    header = json.dumps({"format": FORMAT, "created": manifest["created"], "key_id": key_id(key),
                         "nonce": _b64u(nonce)}, sort_keys=True).encode() + b"\n"
    sealed = AESGCM(key).encrypt(nonce, buffer.getvalue(), MAGIC + header)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_new_file(out, MAGIC + header + sealed, 0o600)
    return {"path": out, "key_path": path, "key_created": created, "key_id": key_id(key), "report": report,
            "files": len(members)}


def is_backup(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def prune(folder, keep_seconds=KEEP_SECONDS, now=None):
    """Remove the backups in folder (this format only) last modified more than keep_seconds ago."""
    now = time.time() if now is None else now
    removed = []
    for path in sorted(Path(folder).glob("*" + SUFFIX)):
        if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime > keep_seconds \
                and is_backup(path):
            path.unlink()
            removed.append(path)
    return removed


def _open(source, key):
    raw = Path(source).read_bytes()
    if not raw.startswith(MAGIC):
        raise BackupError(f"{source} is not a backup of this control plane")
    end = raw.index(b"\n", len(MAGIC)) + 1 if b"\n" in raw[len(MAGIC):] else None
    if end is None:
        raise BackupError(f"{source}: the backup header is cut off")
    try:
        header = json.loads(raw[len(MAGIC):end])
        nonce = base64.urlsafe_b64decode(header["nonce"] + "=" * (-len(header["nonce"]) % 4))
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"{source}: the backup header is damaged; refused")
    if header.get("key_id") != key_id(key):
        raise BackupError(f"{source} was made with backup key {header.get('key_id')}, this key is {key_id(key)}; "
                          "refused")
    try:
        return AESGCM(key).decrypt(nonce, raw[end:], raw[:end])
    except InvalidTag:
        raise BackupError(f"{source} fails authentication: it was altered after it was written; refused")


def _extract(payload, into):
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        for member in tar.getmembers():
            target = (into / member.name).resolve()
            if not member.isfile() or into.resolve() not in target.parents:
                raise BackupError(f"the backup holds an unexpected entry {member.name!r}; refused")
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(tar.extractfile(member).read())
            os.chmod(target, 0o600 if not member.name.endswith((".json", "ca.pem", "server.pem")) else 0o644)


def restore(source, data_dir, key_file=None):
    """Decrypt, check every file and the audit chain, and only then put the data dir in place."""
    data_dir = Path(data_dir)
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(f"{data_dir} exists and is not empty; restore into a fresh folder")
    given = key_file or os.environ.get(KEY_ENV)
    if not given:
        raise BackupError(f"restore needs the backup key: --key-file FILE or {KEY_ENV} (the {KEY_NAME} of the "
                          "data dir that made the backup)")
    payload = _open(source, read_key(given))
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=str(data_dir.parent)))
    try:
        _extract(payload, staging)
        try:
            manifest = json.loads((staging / MANIFEST).read_text())
        except (OSError, ValueError):
            raise BackupError("the backup has no manifest; refused")
        for rel, digest in manifest["files"].items():
            path = staging / rel
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                raise BackupError(f"{rel} in the backup does not match its manifest; refused")
        (staging / MANIFEST).unlink()
        conn = store.connect(staging)
        report = audit.verify(conn)
        conn.close()
        if not report.ok:
            raise BackupError("the audit trail in the backup does not verify; refused:\n  " + "\n  ".join(report.lines()))
        if list(report.head or []) != (manifest["head"] or []):
            raise BackupError("the audit chain head in the backup is not the one recorded when it was made; refused")
        if data_dir.exists():
            data_dir.rmdir()
        os.chmod(staging, 0o700)
        os.rename(staging, data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"report": report, "created": manifest["created"]}
