# -*- coding: utf-8 -*-
# Copyright: Bootstrap SaaS maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local verification of control-plane tokens (RS256 JWTs), following RFC 8725.

Checks run cheapest and least trusting first: size and shape, then the header (``alg`` must be
exactly RS256, explicit ``typ``, ``kid`` shape) before any key lookup, then the signature with the
JWKS key for that ``kid``, then the claims. Header fields that point at keys elsewhere (``jku``,
``x5u``, ``jwk``, ``x5c``) are never read. Every refusal is a ``TokenRefused`` with a reason and a
message that shows the token's fingerprint, never the token.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
import re

try:
    import jwt
    from jwt.exceptions import InvalidAlgorithmError, InvalidSignatureError, PyJWTError
except ImportError:  # the plugins call missing_libraries() first; ansible-doc and imports work without it
    jwt = None

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import token_fingerprint
from ansible_collections.bootstrap_saas.provisioning.plugins.plugin_utils._jwks import KID_PATTERN, JwksError

PROVISION_TYP = "bs-provision+jwt"
RUN_TYP = "bs-run+jwt"
PROVISION_AUDIENCE = "bootstrap-saas:provision"
RUN_AUDIENCE = "bootstrap-saas:run"
DEFAULT_ISSUER = "bootstrap-saas"
DEFAULT_LEEWAY = 30
DEFAULT_MAX_TTL = 86400
MAX_TOKEN_BYTES = 8192
REQUIRED_CLAIMS = ("exp", "aud", "jti", "sub", "iat", "iss")

_SEGMENT = re.compile(r"\A[A-Za-z0-9_-]*\Z")


class TokenRefused(Exception):
    """A token failed verification. ``reason`` is one of:

    expired, not_yet_valid, wrong_audience, wrong_issuer, unknown_key, bad_signature, bad_algorithm,
    wrong_type, malformed, too_large, missing_claim, ttl_too_long, bad_kid, bad_claim.
    """

    def __init__(self, reason, detail, fingerprint=None):
        self.reason = reason
        self.detail = detail
        self.fingerprint = fingerprint
        message = "token refused (%s): %s" % (reason, detail)
        if fingerprint:
            message += " (fingerprint sha256:%s...)" % fingerprint[:16]
        super().__init__(message)


def _utc(epoch):
    try:
        return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "epoch %r" % (epoch,)


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError("duplicate member %r" % key)
        obj[key] = value
    return obj


def b64url_decode_canonical(segment):
    """Decode unpadded base64url, refusing any other spelling of the same bytes (no malleability)."""
    if not _SEGMENT.match(segment) or len(segment) % 4 == 1:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        raise ValueError("not the canonical base64url encoding")
    return raw


def decode_json_segment(segment):
    """A JSON object from a base64url segment (duplicate members refused)."""
    obj = json.loads(b64url_decode_canonical(segment).decode("utf-8"), object_pairs_hook=_no_duplicates)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def unverified_header(token):
    """The header of a three-segment token, without any verification (for logging the ``kid``)."""
    return decode_json_segment(str(token).split(".", maxsplit=1)[0])


def verify_token(token, jwks, expected_typ, issuer=DEFAULT_ISSUER, audience=PROVISION_AUDIENCE,
                 leeway=DEFAULT_LEEWAY, max_ttl=DEFAULT_MAX_TTL, now=None):
    """Verify ``token`` against ``jwks`` (anything with ``key_for(kid)``) and return its claims.

    Raises ``TokenRefused``; a JWKS that cannot be fetched raises ``JwksError`` (fail closed).
    """
    if not isinstance(token, str):
        raise TokenRefused("malformed", "the token is not a string")
    token = str(token)  # ansible-core 2.19 hands over tagged str subclasses
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise TokenRefused("malformed", "the token contains non-ASCII characters") from None
    fingerprint = token_fingerprint(token)

    def refuse(reason, detail):
        return TokenRefused(reason, detail, fingerprint)

    if len(raw) > MAX_TOKEN_BYTES:
        raise refuse("too_large", "the token is %d bytes, more than the %d allowed" % (len(raw), MAX_TOKEN_BYTES))
    segments = token.split(".")
    if len(segments) != 3:
        raise refuse("malformed", "a signed JWT has 3 dot-separated segments, this one has %d" % len(segments))
    header_segment, payload_segment, signature_segment = segments
    try:
        header = decode_json_segment(header_segment)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise refuse("malformed", "the header is not base64url-encoded JSON") from None

    alg = header.get("alg")
    if alg != "RS256":
        raise refuse("bad_algorithm", "only RS256 is accepted, the header says alg %s"
                     % (json.dumps(alg) if isinstance(alg, str) and len(alg) <= 16 else "(unusable value)"))
    if header.get("typ") != expected_typ:
        typ = header.get("typ")
        raise refuse("wrong_type", "expected typ %s, the header says %s"
                     % (json.dumps(expected_typ), json.dumps(typ) if isinstance(typ, str) and len(typ) <= 32
                        else "(missing or unusable)"))
    if "crit" in header:
        raise refuse("malformed", "the header lists critical extensions (crit), none are supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.match(kid):
        raise refuse("bad_kid", "the header's kid is missing or not 1 to 64 characters of [A-Za-z0-9_-]")
    try:
        b64url_decode_canonical(payload_segment)
        signature = b64url_decode_canonical(signature_segment)
    except (ValueError, binascii.Error):
        raise refuse("malformed", "payload or signature is not canonical unpadded base64url") from None
    if not signature:
        raise refuse("bad_signature", "the token has no signature")

    try:
        key = jwks.key_for(kid)
    except JwksError as e:
        if e.reason == "unknown_key":
            raise refuse("unknown_key", "no signing key with kid %r in the control plane's JWKS" % kid) from None
        raise

    try:
        # PyJWT checks the signature only; the claims are checked below with our own rules.
        payload_bytes = jwt.PyJWS().decode(token, key, algorithms=["RS256"])
    except InvalidSignatureError:
        raise refuse("bad_signature", "the signature does not verify with key %r" % kid) from None
    except InvalidAlgorithmError:
        raise refuse("bad_algorithm", "only RS256 is accepted") from None
    except PyJWTError:
        raise refuse("malformed", "the token could not be decoded") from None

    try:
        claims = json.loads(payload_bytes.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError):
        raise refuse("malformed", "the payload is not JSON") from None
    if not isinstance(claims, dict):
        raise refuse("malformed", "the payload is not a JSON object")

    required = REQUIRED_CLAIMS + (("run",) if expected_typ == RUN_TYP else ())
    missing = [name for name in required if name not in claims]
    if missing:
        raise refuse("missing_claim", "required claim(s) missing: %s" % ", ".join(missing))
    for name in ("exp", "iat", "nbf"):
        if name in claims and not _is_number(claims[name]):
            raise refuse("bad_claim", "claim %s must be a number (seconds since the epoch)" % name)
    for name in ("sub", "jti", "iss") + (("run",) if expected_typ == RUN_TYP else ()):
        if not isinstance(claims[name], str) or not claims[name]:
            raise refuse("bad_claim", "claim %s must be a non-empty string" % name)
    if "profile" in claims and not isinstance(claims["profile"], str):
        raise refuse("bad_claim", "claim profile must be a string")

    if claims["iss"] != str(issuer):
        raise refuse("wrong_issuer", "expected issuer %s" % json.dumps(str(issuer)))
    aud = claims["aud"]
    audiences = aud if isinstance(aud, list) else [aud]
    if not all(isinstance(a, str) for a in audiences):
        raise refuse("bad_claim", "claim aud must be a string or a list of strings")
    if str(audience) not in audiences:
        raise refuse("wrong_audience", "expected audience %s" % json.dumps(str(audience)))

    now = datetime.datetime.now(datetime.timezone.utc).timestamp() if now is None else now
    if now >= claims["exp"] + leeway:
        raise refuse("expired", "the token expired at %s" % _utc(claims["exp"]))
    if "nbf" in claims and claims["nbf"] > now + leeway:
        raise refuse("not_yet_valid", "the token is not valid before %s" % _utc(claims["nbf"]))
    if claims["iat"] > now + leeway:
        raise refuse("not_yet_valid", "the token was issued in the future (%s)" % _utc(claims["iat"]))
    if claims["exp"] - claims["iat"] > max_ttl:
        raise refuse("ttl_too_long", "the token lives %d s, more than the maximum of %d s"
                     % (claims["exp"] - claims["iat"], max_ttl))
    return claims
