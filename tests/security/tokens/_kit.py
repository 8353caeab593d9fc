"""Shared by the token security tests: raw HTTPS calls to a real control plane, and tokens made with its key.

Calls go through http.client rather than the collection's client so that nothing on our side could
hide a control plane that echoed a token (the collection's client scrubs secrets from messages).
"""
import hashlib
import http.client
import json
import secrets
import ssl
import time
import urllib.parse
import uuid

import jwt
from cryptography.hazmat.primitives import serialization

PROVISION_TYP = "bs-provision+jwt"
RUN_TYP = "bs-run+jwt"
PROVISION_AUD = "bootstrap-saas:provision"
RUN_AUD = "bootstrap-saas:run"
ISSUER = "bootstrap-saas"
LEEWAY = 30  # seconds, on both sides by default


class Answer:
    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers

    @property
    def code(self):
        return (self.body.get("error") or {}).get("code")

    @property
    def message(self):
        return (self.body.get("error") or {}).get("message", "")

    def __repr__(self):
        return "Answer(%d, %r)" % (self.status, self.body)


def tls_context(cp):
    return ssl.create_default_context(cafile=str(cp.ca_path))


def connection(cp, context=None, timeout=60):
    parts = urllib.parse.urlsplit(cp.url)
    return http.client.HTTPSConnection(parts.hostname, parts.port, context=context or tls_context(cp),
                                       timeout=timeout)


def send(conn, method, path, body=None, bearer=None):
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if bearer:
        headers["Authorization"] = "Bearer " + bearer
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    return Answer(resp.status, json.loads(raw) if raw else {}, dict(resp.getheaders()))


def api(cp, method, path, body=None, bearer=None):
    conn = connection(cp)
    try:
        return send(conn, method, path, body, bearer)
    finally:
        conn.close()


def secret_hash():
    return hashlib.sha256(secrets.token_hex(32).encode()).hexdigest()


def fingerprint(token):
    return hashlib.sha256(token.encode()).hexdigest()


def machine(machine_id):
    return {"id": machine_id, "hostname": "host-" + machine_id, "user": "dev"}


def redeem_body(token, machine_secret_hash, machine_id="m1"):
    return {"token": token, "machine": machine(machine_id), "machine_secret_hash": machine_secret_hash}


def redeem(cp, token, machine_secret_hash, machine_id="m1"):
    return api(cp, "POST", "/v1/tokens/redeem", redeem_body(token, machine_secret_hash, machine_id))


def validate(cp, token):
    return api(cp, "POST", "/v1/tokens/validate", {"token": token})


def mint(cp, profile="dev", user="alice", ttl=None):
    """A real token minted over the API (faster than the CLI when a test needs many)."""
    body = {"profile": profile, "user": user}
    if ttl is not None:
        body["ttl"] = ttl
    answer = api(cp, "POST", "/v1/tokens", body, bearer=cp.admin_key)
    assert answer.status == 201, answer
    return answer.body["token"]


def kid_of(token):
    return jwt.get_unverified_header(token)["kid"]


def key_metadata(cp):
    return sorted((json.loads(p.read_text()) for p in (cp.data_dir / "keys").glob("*.json")),
                  key=lambda m: (m["created"], m["kid"]))


def signing_key(cp):
    """The control plane's current private key and its kid, read from its data dir."""
    kid = [m for m in key_metadata(cp) if m["retired_at"] is None][-1]["kid"]
    key = serialization.load_pem_private_key((cp.data_dir / "keys" / ("%s.pem" % kid)).read_bytes(), None)
    return kid, key


def jwks_kids(cp):
    answer = api(cp, "GET", "/.well-known/jwks.json")
    assert answer.status == 200, answer
    return [k["kid"] for k in answer.body["keys"]]


def claims(**changes):
    now = int(time.time())
    c = {"iss": ISSUER, "aud": PROVISION_AUD, "sub": "alice", "jti": uuid.uuid4().hex,
         "iat": now, "nbf": now, "exp": now + 600, "profile": "dev"}
    c.update(changes)
    return c


def forge(key, kid, typ=PROVISION_TYP, **changes):
    """A token signed with the control plane's own key (so only the claims can be wrong)."""
    return jwt.encode(claims(**changes), key, algorithm="RS256", headers={"kid": kid, "typ": typ})
