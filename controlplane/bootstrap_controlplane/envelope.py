"""Per-user credential envelopes: compact JWE (alg dir, enc A256GCM), made on the user's side.

The control plane stores the envelope only; the user's key never reaches the data dir. The CLI
commands that encrypt (`credential put`) and re-encrypt (`credential rotate-key`) run where the
user's key file is, read it, and write nothing but ciphertext to the store.
"""
import json
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .util import atomic_write, b64u_decode, b64u_encode, write_new_file


class KeyFileError(ValueError):
    pass


class EnvelopeOpenError(ValueError):
    """An envelope that cannot be opened; the message names the check, never the key or plaintext."""


def new_user_key():
    return {"kty": "oct", "kid": "uk-" + secrets.token_hex(8), "alg": "dir", "use": "enc",
            "k": b64u_encode(os.urandom(32))}


def new_user_key_set():
    return {"keys": [new_user_key()]}


def write_user_key(path, key_set=None):
    write_new_file(path, json.dumps(key_set or new_user_key_set(), indent=1) + "\n", 0o600)


def _key_entries(text):
    try:
        doc = json.loads(text)
    except ValueError:
        raise KeyFileError("the user key is not JSON")
    keys = doc.get("keys") if isinstance(doc, dict) and "keys" in doc else [doc]
    if not isinstance(keys, list) or not keys:
        raise KeyFileError("the user key set has no keys")
    return keys


def parse_user_keys(text):
    """A JWK set or a single JWK; returns [(kid, 32-byte key)], current key first."""
    parsed = []
    for jwk in _key_entries(text):
        if not isinstance(jwk, dict) or jwk.get("kty") != "oct" or not isinstance(jwk.get("kid"), str):
            raise KeyFileError("each user key must be a JWK with kty oct and a kid")
        try:
            raw = b64u_decode(jwk.get("k", ""))
        except ValueError:
            raise KeyFileError(f"user key {jwk['kid']}: k is not base64url")
        if len(raw) != 32:
            raise KeyFileError(f"user key {jwk['kid']}: k must be 32 bytes (A256GCM)")
        if any(kid == jwk["kid"] for kid, _ in parsed):
            raise KeyFileError(f"user key {jwk['kid']} appears twice in the key set")
        parsed.append((jwk["kid"], raw))
    return parsed


def add_new_key(path):
    """Put a fresh key first in the key file at ``path`` (it becomes current; older keys stay)."""
    text = open(path, encoding="utf-8").read()
    entries = _key_entries(text)
    parse_user_keys(text)
    fresh = new_user_key()
    atomic_write(path, json.dumps({"keys": [fresh] + entries}, indent=1) + "\n", 0o600)
    return fresh["kid"], b64u_decode(fresh["k"])


def encrypt(kid, key, name, user, version, plaintext):
    header = {"alg": "dir", "enc": "A256GCM", "kid": kid, "bs_name": name, "bs_user": user, "bs_ver": version}
    protected = b64u_encode(json.dumps(header, separators=(",", ":")).encode("utf-8"))
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext, protected.encode("ascii"))
    return ".".join([protected, "", b64u_encode(iv), b64u_encode(sealed[:-16]), b64u_encode(sealed[-16:])])


def header(compact):
    return json.loads(b64u_decode(compact.split(".")[0]))


def header_kid(compact):
    """The kid an envelope names, or None when its header cannot be read."""
    try:
        return header(compact).get("kid")
    except (ValueError, AttributeError):
        return None


def decrypt(keys, compact, name=None, user=None):
    """The plaintext of a stored envelope, after checking that its header is for ``name`` of ``user``.

    `credential rotate-key` passes both, so that a ciphertext moved to another row is refused rather
    than re-encrypted under a header that would make it look genuine; tooling may omit them.
    """
    try:
        protected, encrypted_key, iv, ciphertext, tag = compact.split(".")
        head = header(compact)
    except ValueError:
        raise EnvelopeOpenError(f"credential {name} of {user}: the stored envelope is malformed")
    if encrypted_key or head.get("alg") != "dir" or head.get("enc") != "A256GCM":
        raise EnvelopeOpenError(f"credential {name} of {user}: the stored envelope is not alg dir with A256GCM")
    if (name is not None and head.get("bs_name") != name) or (user is not None and head.get("bs_user") != user):
        raise EnvelopeOpenError(f"credential {name} of {user}: the stored envelope's header names credential "
                                f"{head.get('bs_name')!r} of user {head.get('bs_user')!r}")
    key = dict(keys).get(head.get("kid"))
    if key is None:
        raise EnvelopeOpenError(f"credential {name} of {user}: encrypted with user key {head.get('kid')!r}, "
                                f"which is not in the key file")
    try:
        return AESGCM(key).decrypt(b64u_decode(iv), b64u_decode(ciphertext) + b64u_decode(tag),
                                   protected.encode("ascii"))
    except (InvalidTag, ValueError):
        raise EnvelopeOpenError(f"credential {name} of {user}: decryption with user key {head.get('kid')!r} "
                                f"failed: wrong key or tampered data")
