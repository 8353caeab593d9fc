"""Minting and verifying the two kinds of token. Verification needs no database: the edge check."""
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
KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
REQUIRED = ["exp", "iat", "nbf", "sub", "jti", "iss", "aud"]


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


def verify(keyring, config, token, kind):
    """Check a token completely without touching the database. Returns (claims, fingerprint)."""
    if not isinstance(token, str) or not token:
        raise bad_request("token must be a non-empty string")
    if len(token) > MAX_TOKEN_BYTES:
        raise ApiError(413, "payload_too_large", f"a token is at most {MAX_TOKEN_BYTES} bytes")
    if not token.isascii():
        raise _unauthorized("token_malformed", "the token is not a JWT (non-ASCII characters)")
    fp = fingerprint(token)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _unauthorized("token_malformed", f"the token is not a JWT (fingerprint {fp})")
    if header.get("alg") != "RS256":
        raise _unauthorized("token_invalid", f"algorithm {str(header.get('alg'))[:20]!r} refused: RS256 only")
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_RE.match(kid):
        raise _unauthorized("token_malformed", "the token header has no valid kid")
    public_key = keyring.public_key(kid)
    if public_key is None:
        raise _unauthorized("token_invalid", f"unknown signing key {kid!r} (fingerprint {fp})")
    leeway = config["leeway"]
    try:
        # Audience is checked below, after the type, so that a token of the other kind says so.
        claims = jwt.decode(token, public_key, algorithms=["RS256"], issuer=config["issuer"], leeway=leeway,
                            options={"require": REQUIRED, "verify_aud": False, "strict_aud": False})
    except jwt.ExpiredSignatureError:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        raise _unauthorized("token_expired", f"the token expired at {_iso(exp)} (fingerprint {fp})")
    except jwt.ImmatureSignatureError:
        raise _unauthorized("token_not_yet_valid", f"the token is not valid yet (fingerprint {fp})")
    except jwt.InvalidIssuerError:
        raise _unauthorized("token_wrong_issuer", f"the token was not issued by {config['issuer']!r}")
    except jwt.MissingRequiredClaimError as exc:
        raise _unauthorized("token_malformed", f"the token lacks the claim {exc.claim!r}")
    except jwt.InvalidSignatureError:
        raise _unauthorized("token_invalid", f"bad signature (fingerprint {fp})")
    except jwt.DecodeError:
        raise _unauthorized("token_malformed", f"the token cannot be decoded (fingerprint {fp})")
    except jwt.PyJWTError as exc:
        raise _unauthorized("token_invalid", f"{type(exc).__name__} (fingerprint {fp})")
    if header.get("typ") != kind["typ"]:
        expected = "provisioning" if kind is PROVISION else "run"
        raise _unauthorized("token_wrong_type", f"a {expected} token is needed here (typ {kind['typ']})")
    if claims.get("aud") != kind["aud"]:
        raise _unauthorized("token_wrong_audience", f"the token's audience is not {kind['aud']!r}")
    for claim in ("exp", "iat", "nbf"):
        if isinstance(claims[claim], bool) or not isinstance(claims[claim], int):
            raise _unauthorized("token_malformed", f"claim {claim} must be an integer")
    for claim in ("sub", "jti", "profile") + (("run",) if kind is RUN else ()):
        if not isinstance(claims.get(claim), str) or not claims[claim]:
            raise _unauthorized("token_malformed", f"the token lacks the claim {claim!r}")
    max_life = config["max_ttl"] + (config["run_token_extra"] if kind is RUN else 0)
    if claims["exp"] - claims["iat"] > max_life:
        raise _unauthorized("token_invalid", f"the token's lifetime exceeds the maximum of {max_life} s")
    return claims, fp


def _iso(epoch):
    try:
        return epoch_iso(int(epoch))
    except (TypeError, ValueError, OverflowError):
        return "an unknown time"
