"""Small helpers shared by every module: canonical JSON, atomic files, time, config."""
import base64
import datetime
import hashlib
import json
import os
import tempfile
from pathlib import Path

DB_NAME = "controlplane.db"
CONFIG_NAME = "config.json"
DEFAULT_CONFIG = {
    "issuer": "bootstrap-saas",
    "default_ttl": 3600,
    "max_ttl": 86400,
    # A run token outlives its provisioning token by this much (docs/api.md).
    "run_token_extra": 3600,
    "leeway": 30,
    "rate_limit": {"rate": 50, "burst": 100},
}


def canonical_json(obj):
    """The one serialisation that the audit hash chain is computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_hex(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def fingerprint(token):
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def b64u_encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text):
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch_iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write(path, data, mode=0o600):
    """Write via a temp file in the same directory and rename, so readers never see half a file."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_new_file(path, data, mode=0o600):
    """Create a file that must not exist yet (O_EXCL), with its final mode from the start."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)


def load_config(data_dir):
    config = json.loads((Path(data_dir) / CONFIG_NAME).read_text())
    merged = dict(DEFAULT_CONFIG)
    merged.update(config)
    return merged
