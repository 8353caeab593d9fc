"""Enrollment keys: secrets that can only mint provisioning tokens, for one profile and one user.

A job template that targets many hosts and is relaunched cannot hold single-use tokens, so it holds
an enrollment key and mints one token per host. The key's value is shown once, when it is created;
the database keeps its SHA-256 fingerprint only. Its id (``ek-`` and 16 hex) is part of the value, so
a refusal can name the key without the secret, and the audit trail names the id as the minting actor.
"""
import hmac
import re
import secrets
import time

from . import audit, store, tokens
from .errors import ApiError, bad_request, not_found
from .util import epoch_iso, fingerprint

PREFIX = "bsek."
DEFAULT_EXPIRES = 7 * 86400
MAX_EXPIRES = 365 * 86400
KEY_ID_RE = re.compile(r"^ek-[0-9a-f]{16}$")
VALUE_RE = re.compile(r"^bsek\.(ek-[0-9a-f]{16})\.[A-Za-z0-9_-]{43}$")


def is_enrollment_key(bearer):
    """Admin keys never start with the prefix, so the Authorization header alone says which it is."""
    return bearer.startswith(PREFIX)


def actor_of(key_id):
    return f"enrollment-key:{key_id}"


def create(conn, profile, user, expires_in=None, actor="cli"):
    """A new key for one profile and one user. Returns (key_id, value, expires_at); the value is shown once."""
    tokens.check_name("profile", profile)
    tokens.check_name("user", user)
    if expires_in is None:
        expires_in = DEFAULT_EXPIRES
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 0 < expires_in <= MAX_EXPIRES:
        raise bad_request(f"expires must be an integer between 1 and {MAX_EXPIRES} seconds")
    if store.latest_profile(conn, profile) is None:
        raise not_found(f"unknown profile {profile!r}")
    key_id = "ek-" + secrets.token_hex(8)
    value = f"{PREFIX}{key_id}.{secrets.token_urlsafe(32)}"
    now = int(time.time())
    expires_at = now + expires_in
    with store.Transaction(conn):
        conn.execute(
            "INSERT INTO enrollment_keys (key_id, fingerprint, profile, user, created_at, expires_at, created_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key_id, fingerprint(value), profile, user, now, expires_at, actor))
        audit.append(conn, "enrollment_key.created", actor,
                     {"key_id": key_id, "profile": profile, "user": user, "expires_at": expires_at},
                     subject=key_id)
    return key_id, value, expires_at


def revoke(conn, key_id, actor="cli"):
    """Revoke a key from now on. Returns the epoch it was revoked at (earlier if it already was)."""
    if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
        raise bad_request("an enrollment key id looks like ek- and 16 hex characters")
    with store.Transaction(conn):
        row = conn.execute("SELECT revoked_at FROM enrollment_keys WHERE key_id=?", (key_id,)).fetchone()
        if row is None:
            raise not_found(f"no enrollment key {key_id}")
        if row["revoked_at"] is not None:
            return row["revoked_at"]
        now = int(time.time())
        conn.execute("UPDATE enrollment_keys SET revoked_at=? WHERE key_id=? AND revoked_at IS NULL", (now, key_id))
        audit.append(conn, "enrollment_key.revoked", actor, {"key_id": key_id}, subject=key_id)
    return now


def authorize(conn, value, profile, user, client_address=None):
    """The key row behind a presented value, if it may mint for profile and user (None = its own scope).

    An unknown or wrong value is 401 without detail. A known key that is revoked, expired or asked
    for another profile or user is refused with its own code, and the refusal is audited.
    """
    match = VALUE_RE.match(value)
    row = None
    if match:
        row = conn.execute("SELECT * FROM enrollment_keys WHERE key_id=?", (match.group(1),)).fetchone()
    if row is None or not hmac.compare_digest(row["fingerprint"], fingerprint(value)):
        raise ApiError(401, "unauthorized", "bad admin key or enrollment key")
    key_id = row["key_id"]
    now = int(time.time())
    if row["revoked_at"] is not None:
        refusal = ApiError(401, "enrollment_key_revoked",
                           f"enrollment key {key_id} was revoked at {epoch_iso(row['revoked_at'])}")
    elif now >= row["expires_at"]:
        refusal = ApiError(401, "enrollment_key_expired",
                           f"enrollment key {key_id} expired at {epoch_iso(row['expires_at'])}")
    elif profile not in (None, row["profile"]) or user not in (None, row["user"]):
        refusal = ApiError(403, "enrollment_key_out_of_scope",
                           f"enrollment key {key_id} mints only for profile {row['profile']!r} and user "
                           f"{row['user']!r}")
    else:
        return row
    audit.record(conn, "token.mint_refused", actor_of(key_id),
                 {"key_id": key_id, "reason": refusal.code, "profile": profile, "user": user},
                 subject=key_id, client_address=client_address)
    raise refusal


def mint(conn, keyring, config, value, doc, client_address=None):
    """POST /v1/tokens with an enrollment key: profile and user default to, and must equal, its scope."""
    row = authorize(conn, value, doc.get("profile"), doc.get("user"), client_address)
    return tokens.mint_provisioning(conn, keyring, config, row["profile"], row["user"], doc.get("ttl"),
                                    actor_of(row["key_id"]), client_address)
