"""Signing keys (RS256, rotated, published as a JWKS) and the TLS material of the server.

Layout under DATA/keys/: KID.pem (private key, 0600) and KID.json {"kid", "created", "retired_at"}.
The newest key that is not retired signs. A retired key stays published until every token it can have
signed has expired: retired_at + max_ttl + run_token_extra + leeway (a run token lives at most that long);
the next rotation after that deletes its files. Rotations (the CLI's and the server's own, by age) take
an exclusive lock on DATA/keys/.rotate.lock, so two processes never rotate at once.
"""
import contextlib
import datetime
import fcntl
import ipaddress
import json
import os
import secrets
import threading
import time
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .util import atomic_write, write_new_file


def keys_dir(data_dir):
    return Path(data_dir) / "keys"


def new_kid():
    return "sk-" + time.strftime("%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(6)


def _pem(private_key):
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_signing_key(data_dir):
    """Create a new signing key; it becomes current because it is the newest unretired one."""
    kid = new_kid()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    directory = keys_dir(data_dir)
    directory.mkdir(mode=0o700, exist_ok=True)
    write_new_file(directory / f"{kid}.pem", _pem(key), 0o600)
    # Strictly newer than every key before it, so "the newest" is never a tie (two rotations in a second).
    created = max([int(time.time())] + [m["created"] + 1 for m in read_metadata(data_dir)])
    # The .json appears last: a key is only used once both files exist.
    meta = {"kid": kid, "created": created, "retired_at": None}
    atomic_write(directory / f"{kid}.json", json.dumps(meta, indent=1), 0o600)
    return kid


def read_metadata(data_dir):
    metas = []
    for path in keys_dir(data_dir).glob("*.json"):
        if path.name.startswith("."):
            continue
        metas.append(json.loads(path.read_text()))
    metas.sort(key=lambda m: (m["created"], m["kid"]))
    return metas


# The serving process rotates the signing key once it is this old (config "rotate_interval"; 0 = never).
DEFAULT_ROTATE_INTERVAL = 7 * 86400


def published_after_retirement(config):
    """Seconds a retired key stays in the JWKS: the longest any token it signed can still be accepted."""
    return config["max_ttl"] + config["run_token_extra"] + config["leeway"]


@contextlib.contextmanager
def _rotation_lock(data_dir):
    fd = os.open(str(keys_dir(data_dir) / ".rotate.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _rotate_locked(data_dir, config):
    metas = read_metadata(data_dir)
    old = [m for m in metas if m["retired_at"] is None]
    kid = generate_signing_key(data_dir)
    now = int(time.time())
    for meta in old:
        meta["retired_at"] = now
        atomic_write(keys_dir(data_dir) / f"{meta['kid']}.json", json.dumps(meta, indent=1), 0o600)
    # A key past its publication window can verify nothing any more: its private half goes too.
    dropped = []
    if config is not None:
        grace = published_after_retirement(config)
        for meta in metas:
            if meta["retired_at"] is not None and now > meta["retired_at"] + grace:
                (keys_dir(data_dir) / f"{meta['kid']}.json").unlink()  # the .json first: no half key is ever live
                (keys_dir(data_dir) / f"{meta['kid']}.pem").unlink(missing_ok=True)
                dropped.append(meta["kid"])
    return kid, [m["kid"] for m in old], dropped


def rotate(data_dir, config=None):
    """New current key; every older unretired key is marked retired now. Returns (kid, retired, dropped)."""
    with _rotation_lock(data_dir):
        return _rotate_locked(data_dir, config)


def rotate_if_due(data_dir, config, interval):
    """Rotate when the current key is `interval` seconds old (checked again under the lock). Returns the
    rotate() answer, or None when nothing was due."""
    def due():
        current = [m for m in read_metadata(data_dir) if m["retired_at"] is None]
        return not current or time.time() - current[-1]["created"] >= interval

    if interval <= 0 or not due():
        return None
    with _rotation_lock(data_dir):
        if not due():  # another process rotated while we waited for the lock
            return None
        return _rotate_locked(data_dir, config)


class KeyRing:
    """The live keys, re-read whenever DATA/keys changes (a rotation by the CLI while serving)."""

    def __init__(self, data_dir, config):
        self.data_dir = Path(data_dir)
        self.config = config
        self.lock = threading.Lock()
        self.stamp = None
        self.metas = []
        self.private = {}

    def _refresh(self):
        # A few stat calls per request: notices new keys and retirements written by the CLI.
        with os.scandir(keys_dir(self.data_dir)) as entries:
            stamp = sorted((e.name, e.stat().st_mtime_ns) for e in entries
                           if e.name.endswith(".json") and not e.name.startswith("."))
        with self.lock:
            if stamp != self.stamp:
                self.metas = read_metadata(self.data_dir)
                self.stamp = stamp

    def live(self):
        self._refresh()
        now = time.time()
        grace = published_after_retirement(self.config)
        return [m for m in self.metas if m["retired_at"] is None or now <= m["retired_at"] + grace]

    def _private_key(self, kid):
        with self.lock:
            key = self.private.get(kid)
        if key is None:
            data = (keys_dir(self.data_dir) / f"{kid}.pem").read_bytes()
            key = serialization.load_pem_private_key(data, password=None)
            with self.lock:
                self.private[kid] = key
        return key

    def current(self):
        candidates = [m for m in self.live() if m["retired_at"] is None]
        if not candidates:
            raise RuntimeError("no current signing key (run `bs-controlplane keys rotate`)")
        kid = candidates[-1]["kid"]
        return kid, self._private_key(kid)

    def public_key(self, kid):
        """The public key for a live kid, else None (unknown or dropped)."""
        if not any(m["kid"] == kid for m in self.live()):
            return None
        return self._private_key(kid).public_key()

    def jwks(self):
        keys = []
        for meta in self.live():
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._private_key(meta["kid"]).public_key(), as_dict=True)
            keys.append({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": meta["kid"], "n": jwk["n"], "e": jwk["e"]})
        return {"keys": keys}


# --- TLS --------------------------------------------------------------------------------------

def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bootstrap-saas control plane"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_tls(data_dir, issuer):
    """A self-signed CA (DATA/ca.pem, key 0600) and a server certificate for 127.0.0.1 and localhost."""
    data_dir = Path(data_dir)
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{issuer} CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost")).issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    write_new_file(data_dir / "ca-key.pem", _pem(ca_key), 0o600)
    write_new_file(data_dir / "ca.pem", ca_cert.public_bytes(pem), 0o644)
    write_new_file(data_dir / "server-key.pem", _pem(server_key), 0o600)
    write_new_file(data_dir / "server.pem", server_cert.public_bytes(pem), 0o644)
