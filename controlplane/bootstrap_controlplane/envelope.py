"""Per-user credential envelopes: compact JWE (alg dir, enc A256GCM), made on the user's side.

The control plane stores the envelope only; the user's key never reaches the data dir.
"""
import json
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .util import b64u_decode, b64u_encode, write_new_file


class KeyFileError(ValueError):
    pass


def new_user_key_set():
    return {"keys": [{"kty": "oct", "kid": "uk-" + secrets.token_hex(8), "alg": "dir", "use": "enc",
                      "k": b64u_encode(os.urandom(32))}]}


def write_user_key(path):
    write_new_file(path, json.dumps(new_user_key_set(), indent=1) + "\n", 0o600)


def parse_user_keys(text):
    """A JWK set or a single JWK; returns [(kid, 32-byte key)], current key first."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise KeyFileError("the user key is not JSON")
    keys = doc.get("keys") if isinstance(doc, dict) and "keys" in doc else [doc]
    if not isinstance(keys, list) or not keys:
        raise KeyFileError("the user key set has no keys")
    parsed = []
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("kty") != "oct" or not isinstance(jwk.get("kid"), str):
            raise KeyFileError("each user key must be a JWK with kty oct and a kid")
        try:
            raw = b64u_decode(jwk.get("k", ""))
        except ValueError:
            raise KeyFileError(f"user key {jwk['kid']}: k is not base64url")
        if len(raw) != 32:
            raise KeyFileError(f"user key {jwk['kid']}: k must be 32 bytes (A256GCM)")
        parsed.append((jwk["kid"], raw))
    return parsed


def encrypt(kid, key, name, user, version, plaintext):
    header = {"alg": "dir", "enc": "A256GCM", "kid": kid, "bs_name": name, "bs_user": user, "bs_ver": version}
    protected = b64u_encode(json.dumps(header, separators=(",", ":")).encode("utf-8"))
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext, protected.encode("ascii"))
    return ".".join([protected, "", b64u_encode(iv), b64u_encode(sealed[:-16]), b64u_encode(sealed[-16:])])


def header(compact):
    return json.loads(b64u_decode(compact.split(".")[0]))


def decrypt(keys, compact):
    """For tests and tooling: the collection's lookup plugin has its own decrypter."""
    protected, encrypted_key, iv, ciphertext, tag = compact.split(".")
    if encrypted_key:
        raise ValueError("alg dir envelopes carry no encrypted key")
    kid = header(compact)["kid"]
    key = dict(keys)[kid]
    return AESGCM(key).decrypt(b64u_decode(iv), b64u_decode(ciphertext) + b64u_decode(tag), protected.encode("ascii"))
