# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credential envelopes: JWE compact serialization (RFC 7516) with ``alg: dir``, ``enc: A256GCM``.

The protected header carries ``kid``, ``bs_name``, ``bs_user`` and ``bs_ver``; it is the AES-GCM
additional data, so a ciphertext moved to another name or user, or changed in any byte, fails.
Name and user are compared before decrypting so that the error says which check failed. Error
messages never contain key material or plaintext.
"""

from __future__ import annotations

import binascii
import json

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # the lookup calls missing_libraries() first; ansible-doc and imports work without it
    AESGCM = None

from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._jwks import KID_PATTERN
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._tokens import (
    b64url_decode_canonical,
    decode_json_segment,
)

KEY_BYTES = 32
IV_BYTES = 12
TAG_BYTES = 16


class EnvelopeError(Exception):
    """An envelope or key ring was refused. ``reason`` is one of:

    malformed, unknown_kid, decrypt_failed (wrong key or tampered data), name_mismatch,
    user_mismatch, bad_key.
    """

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


def load_key_ring(text):
    """{kid: 32-byte key} from a JWK set ``{"keys": [...]}`` or a single JWK (``kty: oct``)."""
    try:
        document = json.loads(str(text))
    except ValueError:
        raise EnvelopeError("bad_key", "the user key is not JSON (expected a JWK set or a JWK)") from None
    if isinstance(document, dict) and "keys" in document:
        entries = document["keys"]
        if not isinstance(entries, list):
            raise EnvelopeError("bad_key", 'the user key\'s "keys" is not a list')
    elif isinstance(document, dict):
        entries = [document]
    else:
        raise EnvelopeError("bad_key", "the user key is not a JSON object (expected a JWK set or a JWK)")
    ring = {}
    for index, entry in enumerate(entries):
        where = "user key #%d" % (index + 1)
        if not isinstance(entry, dict):
            raise EnvelopeError("bad_key", "%s is not a JSON object" % where)
        kid = entry.get("kid")
        if not isinstance(kid, str) or not KID_PATTERN.match(kid):
            raise EnvelopeError("bad_key", "%s has no kid of 1 to 64 characters of [A-Za-z0-9_-]" % where)
        where = "user key %r" % kid
        if entry.get("kty") != "oct":
            raise EnvelopeError("bad_key", '%s is not a symmetric key (kty must be "oct")' % where)
        if entry.get("alg", "dir") != "dir" or entry.get("use", "enc") != "enc":
            raise EnvelopeError("bad_key", '%s is not meant for this (alg must be "dir", use "enc")' % where)
        try:
            key = b64url_decode_canonical(str(entry.get("k", "")))
        except (ValueError, binascii.Error):
            raise EnvelopeError("bad_key", "%s: k is not unpadded base64url" % where) from None
        if len(key) != KEY_BYTES:
            raise EnvelopeError("bad_key", "%s is not a 256-bit key" % where)
        if kid in ring:
            raise EnvelopeError("bad_key", "%s appears twice in the key ring" % where)
        ring[kid] = key
    if not ring:
        raise EnvelopeError("bad_key", "the user key ring holds no key")
    return ring


def envelope_header(compact):
    """The protected header of an envelope, unverified (raises ``EnvelopeError('malformed')``)."""
    segments = str(compact).strip().split(".")
    if len(segments) != 5:
        raise EnvelopeError("malformed", "a JWE compact envelope has 5 dot-separated segments, this one has %d"
                            % len(segments))
    try:
        return decode_json_segment(segments[0])
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise EnvelopeError("malformed", "the envelope's protected header is not base64url-encoded JSON") from None


def decrypt_envelope(compact, key_ring, expected_name, expected_user):
    """The UTF-8 plaintext of ``compact``, after checking its header against name and user.

    ``expected_user`` None skips the user check (the per-user key still binds the envelope).
    """
    compact = str(compact).strip()
    header = envelope_header(compact)
    header_segment, encrypted_key, iv_segment, ciphertext_segment, tag_segment = compact.split(".")
    if header.get("alg") != "dir" or header.get("enc") != "A256GCM":
        raise EnvelopeError("malformed", 'the envelope is not alg "dir" with enc "A256GCM"')
    if "zip" in header or "crit" in header:
        raise EnvelopeError("malformed", "the envelope uses zip or crit, which are not supported")
    if encrypted_key:
        raise EnvelopeError("malformed", "an alg dir envelope has an empty encrypted key segment")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.match(kid):
        raise EnvelopeError("malformed", "the envelope's kid is missing or badly formed")
    version = header.get("bs_ver")
    if not isinstance(version, int) or isinstance(version, bool):
        raise EnvelopeError("malformed", "the envelope's bs_ver is not an integer")
    name = header.get("bs_name")
    if name != str(expected_name):
        raise EnvelopeError("name_mismatch", "the envelope is for credential %s, not %s"
                            % (json.dumps(name) if isinstance(name, str) else "(none)",
                               json.dumps(str(expected_name))))
    user = header.get("bs_user")
    if expected_user is not None and user != str(expected_user):
        raise EnvelopeError("user_mismatch", "the envelope belongs to user %s, not %s"
                            % (json.dumps(user) if isinstance(user, str) else "(none)",
                               json.dumps(str(expected_user))))
    key = key_ring.get(kid)
    if key is None:
        raise EnvelopeError("unknown_kid", "the envelope was encrypted with user key %r, which is not in the key "
                            "ring (have: %s)" % (kid, ", ".join(sorted(key_ring)) or "none"))
    try:
        iv = b64url_decode_canonical(iv_segment)
        ciphertext = b64url_decode_canonical(ciphertext_segment)
        tag = b64url_decode_canonical(tag_segment)
    except (ValueError, binascii.Error):
        raise EnvelopeError("malformed", "iv, ciphertext or tag is not canonical unpadded base64url") from None
    if len(iv) != IV_BYTES or len(tag) != TAG_BYTES:
        raise EnvelopeError("malformed", "the envelope's iv must be 12 bytes and its tag 16 bytes")
    try:
        plaintext = AESGCM(key).decrypt(iv, ciphertext + tag, header_segment.encode("ascii"))
    except InvalidTag:
        raise EnvelopeError("decrypt_failed", "decryption failed with user key %r: wrong key or tampered data"
                            % kid) from None
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("malformed", "the decrypted credential is not UTF-8 text") from None
