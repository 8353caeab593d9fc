"""Minting and verifying the two kinds of token. Verification needs no database: the edge check."""
import base64
import binascii
import json
import math
import re
import time
import uuid

import jwt

from . import audit, store
from .errors import ApiError, bad_request, not_found
from .util import epoch_iso, fingerprint

PROVISION = {"typ": "bs-provision+jwt", "aud": "bootstrap-saas:provision"}
RUN = {"typ": "bs-run+jwt", "aud": "bootstrap-saas:run"}
MAX_TOKEN_BYTES = 8192
KID_RE = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")  # \Z: a trailing newline is not a kid
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
# The same required claims as the collection's verify_token; nbf is optional (iat stands in for it).
REQUIRED = ("exp", "aud", "jti", "sub", "iat", "iss")
SEGMENT_RE = re.compile(r"\A[A-Za-z0-9_-]*\Z")


def check_name(kind, value):
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise bad_request(f"{kind} must be a name of letters, digits and . _ @ - (at most 128)")
    return value


def sign(keyring, claims, kind):
    kid, key = keyring.current()
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": kind["typ"]})
    return token, kid


def mint_provisioning(conn, keyring, config, profile, user, ttl, actor, client_address=None):
    """Mint a provisioning token for the profile's current version; store its fingerprint only."""
    check_name("profile", profile)
    check_name("user", user)
    if ttl is None:
        ttl = config["default_ttl"]
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0 or ttl > config["max_ttl"]:
        raise bad_request(f"ttl must be an integer between 1 and {config['max_ttl']} seconds")
    current = store.latest_profile(conn, profile)
    if current is None:
        raise not_found(f"unknown profile {profile!r}")
    now = int(time.time())
    claims = {"iss": config["issuer"], "aud": PROVISION["aud"], "sub": user, "jti": uuid.uuid4().hex,
              "iat": now, "nbf": now, "exp": now + ttl, "profile": profile}
    token, kid = sign(keyring, claims, PROVISION)
    fp = fingerprint(token)
    with store.Transaction(conn):
        store.insert_token(conn, {"fingerprint": fp, "jti": claims["jti"], "kid": kid, "profile": profile,
                                  "profile_version": current["version"], "user": user, "iat": now,
                                  "exp": claims["exp"], "minted_by": actor})
        audit.append(conn, "token.minted", actor,
                     {"profile": profile, "profile_version": current["version"], "user": user, "ttl": ttl,
                      "fingerprint": fp, "kid": kid, "expires_at": claims["exp"]},
                     subject=profile, client_address=client_address)
    return {"token": token, "fingerprint": fp, "expires_at": claims["exp"]}


def mint_run_token(keyring, config, provisioning_claims, run_id):
    now = int(time.time())
    claims = {"iss": config["issuer"], "aud": RUN["aud"], "sub": provisioning_claims["sub"],
              "jti": uuid.uuid4().hex, "iat": now, "nbf": now,
              "exp": provisioning_claims["exp"] + config["run_token_extra"],
              "profile": provisioning_claims["profile"], "run": run_id}
    token, kid = sign(keyring, claims, RUN)
    return token, kid, claims["exp"]


def _unauthorized(code, message):
    return ApiError(401, code, message)


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate member {key!r}")
        obj[key] = value
    return obj


def _canonical_b64u(segment):
    """Unpadded base64url in its one canonical spelling: another spelling would be another fingerprint."""
    if not SEGMENT_RE.match(segment) or len(segment) % 4 == 1:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        raise ValueError("not the canonical base64url encoding")
    return raw


def _json_object(raw):
    obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def verify(keyring, config, token, kind, now=None):
    """Check a token completely without touching the database. Returns (claims, fingerprint).

    The same rules, in the same order, as the collection's verify_token: shape and header first (no
    key lookup for a token that fails them), then the signature with the key named by ``kid``, then
    the claims. ``jku``, ``x5u``, ``jwk`` and ``x5c`` are never read.
    """
    if not isinstance(token, str) or not token:
        raise bad_request("token must be a non-empty string")
    if len(token) > MAX_TOKEN_BYTES:
        raise ApiError(413, "payload_too_large", f"a token is at most {MAX_TOKEN_BYTES} bytes")
    if not token.isascii():
        raise _unauthorized("token_malformed", "the token is not a JWT (non-ASCII characters)")
    fp = fingerprint(token)
    segments = token.split(".")
    if len(segments) != 3:
        raise _unauthorized("token_malformed", f"a signed JWT has 3 dot-separated segments, this one has "
                                               f"{len(segments)} (fingerprint {fp})")
    try:
        header = _json_object(_canonical_b64u(segments[0]))
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise _unauthorized("token_malformed", f"the header is not base64url-encoded JSON (fingerprint {fp})")
    alg = header.get("alg")
    if alg != "RS256":
        shown = json.dumps(alg) if isinstance(alg, str) and len(alg) <= 16 else "(missing or unusable)"
        raise _unauthorized("token_invalid", f"algorithm {shown} refused: RS256 only (fingerprint {fp})")
    if header.get("typ") != kind["typ"]:
        expected = "provisioning" if kind is PROVISION else "run"
        raise _unauthorized("token_wrong_type", f"a {expected} token is needed here (typ {kind['typ']}, "
                                                f"fingerprint {fp})")
    if "crit" in header:
        raise _unauthorized("token_malformed", "the header lists critical extensions (crit); none are supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_RE.match(kid):
        raise _unauthorized("token_malformed", "the token header has no valid kid")
    try:
        _canonical_b64u(segments[1])
        signature = _canonical_b64u(segments[2])
    except (ValueError, binascii.Error):
        raise _unauthorized("token_malformed", f"payload or signature is not canonical base64url (fingerprint {fp})")
    if not signature:
        raise _unauthorized("token_invalid", f"bad signature: the token has none (fingerprint {fp})")
    public_key = keyring.public_key(kid)
    if public_key is None:
        raise _unauthorized("token_invalid", f"unknown signing key {kid!r} (fingerprint {fp})")
    try:
        # PyJWS checks the signature only; every claim is checked below, by our rules.
        payload = jwt.PyJWS().decode(token, public_key, algorithms=["RS256"])
    except jwt.InvalidSignatureError:
        raise _unauthorized("token_invalid", f"bad signature for key {kid!r} (fingerprint {fp})")
    except jwt.PyJWTError:
        raise _unauthorized("token_malformed", f"the token cannot be decoded (fingerprint {fp})")
    try:
        claims = _json_object(payload)
    except (ValueError, UnicodeDecodeError):
        raise _unauthorized("token_malformed", f"the payload is not a JSON object (fingerprint {fp})")
    return _checked_claims(config, claims, kind, fp, time.time() if now is None else now), fp


def _checked_claims(config, claims, kind, fp, now):
    strings = ("sub", "jti", "iss", "profile") + (("run",) if kind is RUN else ())
    for claim in REQUIRED + strings:
        if claim not in claims:
            raise _unauthorized("token_malformed", f"the token lacks the claim {claim!r} (fingerprint {fp})")
    for claim in ("exp", "iat", "nbf"):
        if claim in claims and not _is_number(claims[claim]):
            raise _unauthorized("token_malformed", f"claim {claim} must be a number of seconds since the epoch")
    for claim in strings:
        if not isinstance(claims[claim], str) or not claims[claim]:
            raise _unauthorized("token_malformed", f"claim {claim} must be a non-empty string")
    if claims["iss"] != config["issuer"]:
        raise _unauthorized("token_wrong_issuer", f"the token was not issued by {config['issuer']!r}")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if not all(isinstance(a, str) for a in audiences):
        raise _unauthorized("token_malformed", "claim aud must be a string or a list of strings")
    if kind["aud"] not in audiences:  # exact member of the list, never a substring
        raise _unauthorized("token_wrong_audience", f"the token's audience is not {kind['aud']!r}")
    leeway = config["leeway"]
    if now >= claims["exp"] + leeway:
        raise _unauthorized("token_expired", f"the token expired at {_iso(claims['exp'])} (fingerprint {fp})")
    if claims.get("nbf", claims["iat"]) > now + leeway or claims["iat"] > now + leeway:
        raise _unauthorized("token_not_yet_valid", f"the token is not valid yet (fingerprint {fp})")
    max_life = config["max_ttl"] + (config["run_token_extra"] if kind is RUN else 0)
    if claims["exp"] - claims["iat"] > max_life:
        raise _unauthorized("token_invalid", f"the token's lifetime exceeds the maximum of {max_life} s "
                                             f"(fingerprint {fp})")
    return claims


def _iso(epoch):
    try:
        return epoch_iso(int(epoch))
    except (TypeError, ValueError, OverflowError):
        return "an unknown time"
