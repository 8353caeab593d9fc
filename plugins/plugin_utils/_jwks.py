# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""JWKS cache for the controller: RSA signing keys by ``kid``, with rate-limited refetches.

Failure behaviour (a documented choice): the cache **fails closed**. If the JWKS cannot be fetched
or is unusable, ``key_for`` raises ``JwksError(reason="unavailable")`` and no token is accepted.
A cached JWKS is used for known ``kid``s until it is ``max_age`` seconds old; after that it must be
fetched again before use, and if that fetch fails the stale keys are not used either (a key that
left the JWKS must stop verifying). Fetch attempts, failed ones included, happen at most once per
``min_refetch_interval``, so neither a flood of random ``kid``s nor a failing endpoint becomes a
flood of fetches.
"""

from __future__ import annotations

import base64
import re
import threading
import time

try:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
except ImportError:  # the plugins call missing_libraries() first; ansible-doc and imports work without it
    RSAPublicNumbers = None

KID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
MIN_RSA_BITS = 2048


def missing_libraries(*modules):
    """The controller-side Python libraries among ``modules`` (import names) that cannot be imported."""
    missing = []
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    return missing


class JwksError(Exception):
    """The JWKS has no usable key for a ``kid`` (reason ``unknown_key``) or cannot be had (``unavailable``)."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _b64url_uint(value):
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return int.from_bytes(raw, "big")


def parse_jwks(document):
    """Return {kid: RSA public key} for the usable signing keys of a JWKS document.

    Usable: ``kty`` RSA, ``alg`` RS256 or absent, ``use`` sig or absent, a well-formed ``kid``, a
    modulus of at least 2048 bits. Other entries are skipped; a ``kid`` that appears twice is dropped
    (which of the two keys is meant cannot be told).
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('the JWKS is not an object with a "keys" list')
    keys = {}
    duplicates = set()
    for entry in document["keys"]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if entry.get("kty") != "RSA" or entry.get("alg", "RS256") != "RS256" or entry.get("use", "sig") != "sig":
            continue
        if not isinstance(kid, str) or not KID_PATTERN.match(kid):
            continue
        try:
            numbers = RSAPublicNumbers(_b64url_uint(entry.get("e")), _b64url_uint(entry.get("n")))
            key = numbers.public_key()
        except (ValueError, TypeError):
            continue
        if key.key_size < MIN_RSA_BITS:
            continue
        if kid in keys:
            duplicates.add(kid)
        keys[kid] = key
    for kid in duplicates:
        del keys[kid]
    return keys


class JwksCache:
    """Signing keys from ``fetch()`` (a callable returning the JWKS as a dict), cached by ``kid``."""

    def __init__(self, fetch, min_refetch_interval=60, clock=time.monotonic, max_age=3600):
        self._fetch = fetch
        self._min_refetch_interval = min_refetch_interval
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._keys = None
        self._fetched_at = None  # time of the last successful fetch
        self._attempted_at = None  # time of the last fetch attempt, failed or not
        self._last_error = None
        self.fetch_count = 0

    def _may_fetch(self, now):
        return self._attempted_at is None or now - self._attempted_at >= self._min_refetch_interval

    def _refresh(self, now):
        self._attempted_at = now
        self.fetch_count += 1
        try:
            keys = parse_jwks(self._fetch())
        except Exception as e:  # any failure of the fetch means: no keys (fail closed)
            self._last_error = "the JWKS could not be fetched (%s)" % e
            return
        self._keys = keys
        self._fetched_at = now
        self._last_error = None

    def key_for(self, kid):
        """The RSA public key for ``kid``; raises ``JwksError`` (``unknown_key`` or ``unavailable``)."""
        kid = str(kid)
        with self._lock:
            now = self._clock()
            fresh = self._keys is not None and now - self._fetched_at < self._max_age
            if (not fresh or kid not in self._keys) and self._may_fetch(now):
                self._refresh(now)
                fresh = self._keys is not None and now - self._fetched_at < self._max_age
            if not fresh:
                raise JwksError("unavailable", "%s; no token can be verified without it (fail closed)"
                                % (self._last_error or "no current JWKS"))
            key = self._keys.get(kid)
            if key is None and self._last_error:
                raise JwksError("unavailable", "kid %r is not in the cached JWKS and %s (fail closed)"
                                % (kid, self._last_error))
            if key is None:
                raise JwksError("unknown_key", "no signing key with kid %r in the control plane's JWKS" % kid)
            return key
